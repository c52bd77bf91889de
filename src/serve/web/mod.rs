//! The web app that `wenhui serve` serves at `/`: a poem playground (streamed lines and the
//! explain view), a fill page, an answer page, and the Turing test with its results. Plain HTML,
//! CSS and JavaScript compiled into the binary: no CDN, no network, no build step.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file: name, content type, bytes.
type Asset = (&'static str, &'static str, &'static str);

const HTML: &str = "text/html; charset=utf-8";

/// Pages by route.
const PAGES: &[Asset] = &[
    ("/", HTML, include_str!("assets/index.html")),
    ("/fill", HTML, include_str!("assets/fill.html")),
    ("/answer", HTML, include_str!("assets/answer.html")),
    ("/turing", HTML, include_str!("assets/turing.html")),
    ("/turing/results", HTML, include_str!("assets/results.html")),
];

/// Scripts and styles under `/assets/`.
const ASSETS: &[Asset] = &[
    ("style.css", "text/css; charset=utf-8", include_str!("assets/style.css")),
    ("common.js", "text/javascript; charset=utf-8", include_str!("assets/common.js")),
    ("playground.js", "text/javascript; charset=utf-8", include_str!("assets/playground.js")),
    ("forms.js", "text/javascript; charset=utf-8", include_str!("assets/forms.js")),
    ("turing.js", "text/javascript; charset=utf-8", include_str!("assets/turing.js")),
    ("results.js", "text/javascript; charset=utf-8", include_str!("assets/results.js")),
    ("favicon.svg", "image/svg+xml", include_str!("assets/favicon.svg")),
];

/// The routes of the pages (each served by [`page`]).
pub fn page_routes() -> impl Iterator<Item = &'static str> {
    PAGES.iter().map(|(route, _, _)| *route)
}

fn respond(ctype: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        body,
    )
        .into_response()
}

/// The page at `route`.
pub fn page(route: &str) -> Response {
    match PAGES.iter().find(|(r, _, _)| *r == route) {
        Some((_, ctype, body)) => respond(ctype, body),
        None => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, ctype, body)) => respond(ctype, body),
        None => super::limits::ApiError::new(StatusCode::NOT_FOUND, format!("no asset {name}")).into_response(),
    }
}
