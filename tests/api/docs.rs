//! Docs that cannot drift: the settings table (`docs/configuration.md`), the metrics
//! table (`docs/operations.md`) and the error catalogue (`docs/api.md`,
//! `docs/protocol.md`) are checked against the code, so a new setting, metric, error
//! code or close code without its line fails here.

use std::collections::BTreeSet;

use regex::Regex;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `.rs` file under `src/`, with its path, tests and fuzz targets included.
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path.display().to_string(), text));
            }
        }
    }
    let mut out = Vec::new();
    walk(&std::path::Path::new(ROOT).join("src"), &mut out);
    out
}

/// The names in the first column of the markdown tables of `text` (`` | `NAME` | ``).
fn table_names(text: &str, pattern: &str) -> BTreeSet<String> {
    let row = Regex::new(&format!(r"(?m)^\| `({pattern})")).unwrap();
    row.captures_iter(text).map(|c| c[1].to_owned()).collect()
}

#[test]
fn every_setting_read_is_listed_and_documented() {
    let known: BTreeSet<String> = locallife::config::SETTINGS
        .iter()
        .map(|s| s.to_string())
        .collect();
    // What the code reads: the names the files of src/config/ ask for, and any
    // `env::var("…")`. (Not the list itself and its look-alike check, which are
    // `settings.rs`, nor the unit tests.)
    let mut outside_list = String::new();
    for (path, text) in sources() {
        let path = std::path::Path::new(&path);
        if path.parent().is_some_and(|dir| dir.ends_with("src/config"))
            && !path.ends_with("settings.rs")
        {
            outside_list.push_str(&text[..text.find("#[cfg(test)]").unwrap_or(text.len())]);
        }
    }
    let literal = Regex::new(r#""([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|PGSSLROOTCERT)""#).unwrap();
    let mut read_by_code: BTreeSet<String> = literal
        .captures_iter(&outside_list)
        .map(|c| c[1].to_owned())
        .collect();
    let env_var = Regex::new(r#"env::var\("([A-Z_]+)"\)"#).unwrap();
    for (path, text) in sources() {
        // Test-only knobs of the fuzz targets are not settings.
        if path.ends_with("fuzz.rs") {
            continue;
        }
        read_by_code.extend(env_var.captures_iter(&text).map(|c| c[1].to_owned()));
    }
    // RUST_LOG is read by the tracing filter, by name.
    read_by_code.insert("RUST_LOG".into());
    let unlisted: Vec<_> = read_by_code.difference(&known).collect();
    assert!(
        unlisted.is_empty(),
        "read but not in config::SETTINGS: {unlisted:?}"
    );
    let unread: Vec<_> = known.difference(&read_by_code).collect();
    assert!(
        unread.is_empty(),
        "in config::SETTINGS but never read: {unread:?}"
    );

    let documented = table_names(&read("docs/configuration.md"), "[A-Z][A-Z0-9_]+");
    let undocumented: Vec<_> = known.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "settings without a row in docs/configuration.md: {undocumented:?}"
    );
}

#[test]
fn every_metric_is_in_the_operations_table_and_no_row_is_stale() {
    let emitted =
        Regex::new(r#"(?s)(?:counter|gauge|histogram)!\(\s*"(locallife_[a-z0-9_]+)""#).unwrap();
    let mut metrics = BTreeSet::new();
    for (_, text) in sources() {
        metrics.extend(emitted.captures_iter(&text).map(|c| c[1].to_owned()));
    }
    assert!(metrics.len() > 30, "found only {metrics:?}");
    let documented = table_names(&read("docs/operations.md"), "locallife_[a-z0-9_]+");
    let missing: Vec<_> = metrics.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "metrics without a row in docs/operations.md: {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&metrics).collect();
    assert!(
        stale.is_empty(),
        "rows in docs/operations.md for metrics the code does not emit: {stale:?}"
    );
}

#[test]
fn every_error_code_and_close_code_is_in_the_catalogue() {
    let catalogue = read("docs/api.md") + &read("docs/protocol.md");
    // HTTP errors (`ApiError`'s constructors) and socket `error` messages.
    let api_error = Regex::new(
        r#"(?s)ApiError::(?:new\(\s*StatusCode::[A-Z_]+,|unprocessable\(|bad_request\(|forbidden\(|unavailable\()\s*"([a-z_]+)""#,
    )
    .unwrap();
    let socket_error = Regex::new(r#"(?s)ProtocolError \{\s*code: "([a-z_]+)""#).unwrap();
    let mut codes = BTreeSet::new();
    for (_, text) in sources() {
        codes.extend(api_error.captures_iter(&text).map(|c| c[1].to_owned()));
        codes.extend(socket_error.captures_iter(&text).map(|c| c[1].to_owned()));
    }
    assert!(codes.len() > 30, "found only {codes:?}");
    // HTTP codes the source writes are all in the enum the OpenAPI document lists.
    let http: BTreeSet<String> = sources()
        .iter()
        .flat_map(|(_, text)| {
            api_error
                .captures_iter(text)
                .map(|c| c[1].to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let unlisted: Vec<_> = http
        .iter()
        .filter(|c| !locallife::error::CODES.contains(&c.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "codes not in error::CODES: {unlisted:?}"
    );
    let undocumented: Vec<_> = locallife::error::CODES
        .iter()
        .filter(|c| !catalogue.contains(&format!("`{c}`")))
        .collect();
    assert!(
        undocumented.is_empty(),
        "error::CODES the docs never name: {undocumented:?}"
    );
    let missing: Vec<_> = codes
        .iter()
        .filter(|c| !catalogue.contains(&format!("`{c}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "error codes the docs never name (docs/api.md, docs/protocol.md): {missing:?}"
    );

    // Close codes the server uses: each in protocol.md's table.
    let close = Regex::new(r"(?s)Close \{\s*code: (\d{4})").unwrap();
    let mut closes = BTreeSet::new();
    for (_, text) in sources() {
        closes.extend(close.captures_iter(&text).map(|c| c[1].to_owned()));
    }
    assert!(
        closes.contains("4003") && closes.contains("1001"),
        "{closes:?}"
    );
    let protocol = read("docs/protocol.md");
    let missing: Vec<_> = closes
        .iter()
        .filter(|c| {
            !protocol.contains(&format!("| {c} ")) && !protocol.contains(&format!("| `{c}`"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "close codes without a row in docs/protocol.md: {missing:?}"
    );
}

/// Every relative link of the README and the docs leads to a file of the repository.
#[test]
fn every_relative_link_of_the_readme_and_docs_leads_to_a_file() {
    let link = Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").unwrap();
    let mut pages = vec!["README.md".to_owned(), "CHANGELOG.md".to_owned()];
    for entry in std::fs::read_dir(format!("{ROOT}/docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(format!(
                "docs/{}",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let dir = std::path::Path::new(ROOT)
            .join(page)
            .parent()
            .unwrap()
            .to_owned();
        for c in link.captures_iter(&read(page)) {
            let target = &c[1];
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !dir.join(target).exists() {
                broken.push(format!("{page} -> {target}"));
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing: {broken:?}");
}
