//! `outrigger crds [--dir DIR]`: the CRDs generated from the Rust types, written as
//! `k8s/crds/*.yaml` (a test fails when those files differ from what this makes).

use outrigger_control_plane::crds;

use crate::cli::CrdsArgs;

pub(crate) fn run(args: CrdsArgs) -> Result<(), String> {
    let rendered = crds::render().map_err(|e| e.to_string())?;
    let Some(dir) = args.dir else {
        for (index, (_, yaml)) in rendered.iter().enumerate() {
            if index > 0 {
                println!("---");
            }
            print!("{yaml}");
        }
        return Ok(());
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, yaml) in rendered {
        let path = dir.join(file);
        std::fs::write(&path, yaml).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
