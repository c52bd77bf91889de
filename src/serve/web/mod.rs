//! The web app that `wenhui serve` serves at `/`: a poem playground (streamed lines and the
//! explain view), a fill page, an answer page, and the Turing test with its results. Plain HTML,
//! CSS and JavaScript compiled into the binary: no CDN, no network, no build step.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file: name, content type, bytes.
type Asset = (&'static str, &'static str, &'static str);

const HTML: &str = "text/html; charset=utf-8";

/// Pages: route, title (also the navigation label), page script, the page's `<main>` element.
/// Each is wrapped in `assets/layout.html` (head, navigation, footer) once, on first use.
const PAGES: &[(&str, &str, &str, &str)] = &[
    ("/", "作诗 Playground", "playground.js", include_str!("assets/index.html")),
    ("/fill", "填空 Fill", "forms.js", include_str!("assets/fill.html")),
    ("/answer", "问答 Answer", "forms.js", include_str!("assets/answer.html")),
    ("/turing", "图灵测试 Turing test", "turing.js", include_str!("assets/turing.html")),
    ("/turing/results", "结果 Results", "results.js", include_str!("assets/results.html")),
];

/// Whether a page belongs to the Turing test, served only with `serve --turing`.
fn is_turing(route: &str) -> bool {
    route.starts_with("/turing")
}

/// The pages served: the Turing test's only when it runs (its API answers 404 otherwise, so
/// links to it would lead to a page that cannot load a pair).
fn pages(turing: bool) -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str, &'static str)> {
    PAGES.iter().filter(move |(route, ..)| turing || !is_turing(route))
}

/// The pages rendered into the layout, by route: without (index 0) and with (1) the Turing test.
static RENDERED: std::sync::LazyLock<[Vec<(&'static str, String)>; 2]> = std::sync::LazyLock::new(|| [render(false), render(true)]);

fn render(turing: bool) -> Vec<(&'static str, String)> {
    let layout = include_str!("assets/layout.html");
    pages(turing)
        .map(|&(route, title, script, main)| {
            let nav: String = pages(turing)
                .map(|&(r, label, _, _)| {
                    let current = if r == route { r#" aria-current="page""# } else { "" };
                    format!("        <li><a href=\"{r}\"{current}>{label}</a></li>\n")
                })
                .collect();
            let html = layout.replace("{{title}}", title).replace("{{script}}", script).replace("{{nav}}", &nav).replace("{{main}}", main);
            (route, html)
        })
        .collect()
}

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

/// The routes of the pages served (each by [`page`]); `turing`: `serve --turing`.
pub fn page_routes(turing: bool) -> impl Iterator<Item = &'static str> {
    pages(turing).map(|(route, ..)| *route)
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

/// The page at `route`; `turing`: `serve --turing`.
pub fn page(route: &str, turing: bool) -> Response {
    match RENDERED[usize::from(turing)].iter().find(|(r, _)| *r == route) {
        Some((_, body)) => respond(HTML, body),
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
