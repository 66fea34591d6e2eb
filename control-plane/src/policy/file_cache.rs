//! Policy files as last parsed, by path and text. A reload reads every file again (a
//! read is cheap) but parses only those whose text changed: with 10,000 services in a
//! hundred files, an edit to one costs one file's parse, not the mesh's. The checks
//! across files still run on the whole set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::Loader;

#[derive(Debug, Default)]
pub struct FileCache {
    /// The text of each file, and what its documents gave on their own.
    files: HashMap<PathBuf, (String, Loader)>,
}

impl FileCache {
    /// What `text`, the content of `path`, gives: from the cache if the text is the one
    /// parsed last time.
    pub(super) fn parsed(&mut self, path: &Path, text: String, trust_domain: &str) -> &Loader {
        let fresh = self
            .files
            .get(path)
            .is_none_or(|(cached, loader)| *cached != text || loader.trust_domain != trust_domain);
        if fresh {
            let mut loader = Loader::new(trust_domain);
            loader.add_file(path, &text);
            self.files.insert(path.to_path_buf(), (text, loader));
        }
        &self.files[path].1
    }

    /// Forgets the files that are not in `present` (deleted or renamed away).
    pub(super) fn keep_only(&mut self, present: &[PathBuf]) {
        if self.files.len() > present.len() || self.files.keys().any(|p| !present.contains(p)) {
            let present: std::collections::HashSet<&PathBuf> = present.iter().collect();
            self.files.retain(|path, _| present.contains(path));
        }
    }

    /// How many files are held.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::super::check_paths_cached;
    use super::*;

    const SERVICE: &str = "apiVersion: outrigger.dev/v1alpha1\nkind: MeshService\nmetadata: {name: NAME, namespace: shop}\nspec:\n  identity: spiffe://cluster.local/ns/shop/sa/NAME\n";

    #[test]
    fn an_unchanged_file_is_not_parsed_again_and_a_changed_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yaml");
        std::fs::write(&a, SERVICE.replace("NAME", "a")).unwrap();
        std::fs::write(&b, SERVICE.replace("NAME", "b")).unwrap();
        let mut cache = FileCache::default();
        let paths = [dir.path().to_path_buf()];
        let first = check_paths_cached(&paths, "cluster.local", &mut cache);
        assert_eq!(first.result.unwrap().services.len(), 2);
        assert_eq!(cache.len(), 2);
        let cached_a: *const Loader = &cache.files[&a].1;

        std::fs::write(&b, SERVICE.replace("NAME", "b2")).unwrap();
        let second = check_paths_cached(&paths, "cluster.local", &mut cache);
        let names: Vec<String> = second
            .result
            .unwrap()
            .services
            .iter()
            .map(|s| s.name.clone())
            .collect();
        assert_eq!(names, ["a", "b2"], "the edit is seen");
        assert!(
            std::ptr::eq(cached_a, &cache.files[&a].1),
            "a was not parsed again"
        );

        std::fs::remove_file(&b).unwrap();
        let third = check_paths_cached(&paths, "cluster.local", &mut cache);
        assert_eq!(third.result.unwrap().services.len(), 1);
        assert_eq!(cache.len(), 1, "a deleted file is forgotten");
    }

    #[test]
    fn cross_file_checks_still_see_every_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), SERVICE.replace("NAME", "a")).unwrap();
        std::fs::write(dir.path().join("b.yaml"), SERVICE.replace("NAME", "a")).unwrap();
        let mut cache = FileCache::default();
        let paths = [dir.path().to_path_buf()];
        for _ in 0..2 {
            let report = check_paths_cached(&paths, "cluster.local", &mut cache);
            let errors = report.result.unwrap_err().to_string();
            assert!(errors.contains("already defined"), "{errors}");
        }
    }
}
