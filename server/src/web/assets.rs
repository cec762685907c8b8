//! The web viewer's built files (`web/dist`, built from `web/src` and committed, so the
//! server needs no build step of its own), embedded in the binary.

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// Every file the page server serves besides `/session.json`; `/` is `index.html`.
pub const ASSETS: &[Asset] = &[
    Asset {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../../../web/dist/index.html"),
    },
    Asset {
        path: "/viewer.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/dist/viewer.js"),
    },
    Asset {
        path: "/worklet.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../../web/dist/worklet.js"),
    },
];

/// The asset at `path` (`/` meaning `/index.html`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    ASSETS.iter().find(|a| a.path == path)
}
