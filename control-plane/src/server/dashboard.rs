//! The dashboard at `/`: one HTML page, its script and its style sheet, compiled into the
//! binary. It fetches nothing from the network but this port's own `/api/*` endpoints,
//! and draws its charts itself (SVG).

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// The asset at `path`, with its content type.
pub(crate) fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX)),
        "/dashboard.js" => Some(("text/javascript; charset=utf-8", SCRIPT)),
        "/dashboard.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}
