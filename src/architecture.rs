//! The layer check: [`crate::LAYERS`] made true by a test, not by a comment.
//!
//! Every file under `src/` is read as text (but `main.rs`, the binary, which reaches the
//! library only by its name `locallife::`). Comments, strings and character literals
//! are blanked; then every import is collected: each path of a `use` tree; every
//! `crate::…`, `super::…` and `self::…` path anywhere (in attributes and macro arguments
//! too: `body = super::openapi::X` names a type as surely as a `use` does); a path
//! through a child module (`mod x;` then `x::…`, `pub use x::Y`) or through a name a
//! `use` brought in (`use crate::store;` then `store::orders::…`). A path belongs to the
//! file of its longest prefix that is a module file (`crate::auth::jwt::Claims` is
//! `auth/jwt.rs`, `crate::auth::Claims` is `auth/mod.rs`, which re-exports it).
//! `#[cfg(test)]` modules are read like the rest: a test may not reach up either.
//!
//! The check fails, naming each file, line and path at fault, on
//! - a circle between files: a file importing one that imports it back, directly or
//!   through others (a `mod.rs` that re-exports a child, while the child imports the
//!   `mod.rs`, is one);
//! - an import of a top-level module listed after the importer's in `LAYERS` (in a
//!   later layer, or later in the same one), unless it is named in [`crate::UPWARD`];
//! - a module declared in `lib.rs` that `LAYERS` does not place, or the reverse.
//!
//! It is a reader of the source, not a compiler: a name that a glob brings in
//! (`use super::*`) is not followed; a glob of a module counts as an import of it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One import: `file` (relative to `src/`) names `path` (as written) at `line`, and
/// `path` is in `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Import {
    file: String,
    line: usize,
    path: String,
    target: String,
}

/// The module path of a file: `http/limits.rs` is `http::limits`, `http/mod.rs` is
/// `http`, `lib.rs` the crate root.
fn module_of(file: &str) -> Vec<String> {
    let mut segs: Vec<String> = file
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if segs.last().is_some_and(|s| s == "mod") || segs == ["lib"] {
        segs.pop();
    }
    segs
}

/// The top-level module a file is in (`""` for `lib.rs`).
fn top_of(file: &str) -> String {
    module_of(file).into_iter().next().unwrap_or_default()
}

/// `text` with comments, string literals (raw and byte ones too) and character literals
/// turned into spaces, newlines kept so that lines still count.
fn blank(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let at = |j: usize| b.get(j).copied();
        let after_ident = i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_');
        let end = if b[i] == '/' && at(i + 1) == Some('/') {
            (i..b.len()).find(|&j| b[j] == '\n').unwrap_or(b.len())
        } else if b[i] == '/' && at(i + 1) == Some('*') {
            let (mut depth, mut j) = (0usize, i);
            loop {
                if j >= b.len() {
                    break b.len();
                } else if b[j] == '/' && at(j + 1) == Some('*') {
                    depth += 1;
                    j += 2;
                } else if b[j] == '*' && at(j + 1) == Some('/') {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break j;
                    }
                } else {
                    j += 1;
                }
            }
        } else if let Some(end) = raw_string(&b, i).filter(|_| !after_ident) {
            end
        } else if b[i] == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            (j + 1).min(b.len())
        } else if b[i] == '\'' && at(i + 1) == Some('\\') {
            (i + 3..b.len())
                .find(|&j| b[j] == '\'')
                .map_or(b.len(), |j| j + 1)
        } else if b[i] == '\'' && at(i + 2) == Some('\'') {
            i + 3
        } else {
            out.push(b[i]);
            i += 1;
            continue;
        };
        out.extend(
            b[i..end]
                .iter()
                .map(|&c| if c == '\n' { '\n' } else { ' ' }),
        );
        i = end;
    }
    out
}

/// Where the raw string starting at `i` (`r"…"`, `r#"…"#`, `br"…"`) ends, if one does.
fn raw_string(b: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if b.get(j) == Some(&'b') || b.get(j) == Some(&'c') {
        j += 1;
    }
    if b.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let hashes = b[j..].iter().take_while(|&&c| c == '#').count();
    j += hashes;
    if b.get(j) != Some(&'"') {
        return None;
    }
    let close: Vec<char> = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    (j + 1..b.len())
        .find(|&k| b[k..].starts_with(&close))
        .map(|k| k + close.len())
        .or(Some(b.len()))
}

/// A word or a punctuation mark (`::` is one), with its line.
#[derive(Debug, Clone, Copy)]
struct Token<'a> {
    text: &'a str,
    line: usize,
}

fn tokens(text: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut line = 1;
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c == '\n' {
            line += 1;
        } else if c.is_whitespace() {
            continue;
        } else if c.is_alphanumeric() || c == '_' {
            let mut end = start + c.len_utf8();
            while let Some(&(j, d)) = chars.peek() {
                if !(d.is_alphanumeric() || d == '_') {
                    break;
                }
                end = j + d.len_utf8();
                chars.next();
            }
            out.push(Token {
                text: &text[start..end],
                line,
            });
        } else if c == ':' && chars.peek().is_some_and(|&(_, d)| d == ':') {
            chars.next();
            out.push(Token {
                text: &text[start..start + 2],
                line,
            });
        } else {
            out.push(Token {
                text: &text[start..start + c.len_utf8()],
                line,
            });
        }
    }
    out
}

fn is_word(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// The paths of the `use` tree starting at `tokens[i]`, each with its line and the name
/// it binds (`None` for a glob); returns where the tree ends.
fn use_tree(
    tokens: &[Token<'_>],
    mut i: usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, usize, Option<String>)>,
) -> usize {
    let depth = prefix.len();
    let line = tokens.get(i).map_or(0, |t| t.line);
    while let Some(t) = tokens.get(i) {
        match t.text {
            "::" if prefix.len() == depth && depth == 0 => {
                // `use ::name`: an outside crate.
                prefix.push("::".into());
                i += 1;
            }
            "::" => i += 1,
            "{" => {
                i += 1;
                while let Some(t) = tokens.get(i) {
                    match t.text {
                        "}" => {
                            i += 1;
                            break;
                        }
                        "," => i += 1,
                        _ => i = use_tree(tokens, i, prefix, out),
                    }
                }
                break;
            }
            "*" => {
                out.push((prefix.clone(), line, None));
                i += 1;
                break;
            }
            word if is_word(word) => {
                prefix.push(word.to_owned());
                i += 1;
                if tokens.get(i).is_some_and(|t| t.text == "::") {
                    continue;
                }
                let mut name = word.to_owned();
                if tokens.get(i).is_some_and(|t| t.text == "as") {
                    name = tokens.get(i + 1).map_or(name, |t| t.text.to_owned());
                    i += 2;
                }
                let mut path = prefix.clone();
                if path.last().is_some_and(|s| s == "self") {
                    path.pop();
                    if name == "self" {
                        name = path.last().cloned().unwrap_or_default();
                    }
                }
                out.push((path, line, Some(name)));
                break;
            }
            _ => break,
        }
    }
    prefix.truncate(depth);
    i
}

/// Every import of `file`, whose text is `text`, given the module files by module path.
fn imports_of(file: &str, text: &str, modules: &BTreeMap<Vec<String>, String>) -> Vec<Import> {
    let blanked = blank(text);
    let toks = tokens(&blanked);
    let home = module_of(file);
    let children: BTreeSet<&str> = toks
        .windows(3)
        .filter(|w| w[0].text == "mod" && w[2].text == ";")
        .map(|w| w[1].text)
        .collect();

    // The inline `mod x { … }` around each token.
    let mut names_at: Vec<Vec<String>> = Vec::with_capacity(toks.len());
    let mut stack: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        if t.text == "{" {
            if i >= 2 && toks[i - 2].text == "mod" {
                stack.push((toks[i - 1].text.to_owned(), depth));
            }
            depth += 1;
        } else if t.text == "}" {
            depth = depth.saturating_sub(1);
            if stack.last().is_some_and(|(_, d)| *d == depth) {
                stack.pop();
            }
        }
        names_at.push(stack.iter().map(|(n, _)| n.clone()).collect());
    }
    let here = |i: usize| -> Vec<String> {
        let mut m = home.clone();
        m.extend(names_at[i].iter().cloned());
        m
    };

    let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let absolute = |segs: &[String],
                    at: &[String],
                    aliases: &BTreeMap<String, Vec<String>>|
     -> Option<Vec<String>> {
        let first = segs.first()?;
        match first.as_str() {
            "crate" => Some(segs[1..].to_vec()),
            "super" | "self" => {
                let mut m = at.to_vec();
                let mut rest = segs;
                while let Some(s) = rest.first() {
                    match s.as_str() {
                        "super" => {
                            m.pop()?;
                        }
                        "self" => {}
                        _ => break,
                    }
                    rest = &rest[1..];
                }
                m.extend(rest.iter().cloned());
                Some(m)
            }
            name if children.contains(name) => {
                let mut m = home.clone();
                m.extend(segs.iter().cloned());
                Some(m)
            }
            name => aliases.get(name).map(|a| {
                let mut m = a.clone();
                m.extend(segs[1..].iter().cloned());
                m
            }),
        }
    };
    let resolve = |abs: &[String]| -> Option<String> {
        (0..=abs.len())
            .rev()
            .find_map(|k| modules.get(&abs[..k]).cloned())
    };

    let mut out = Vec::new();
    let mut add = |segs: &[String], line: usize, abs: Vec<String>| {
        if let Some(target) = resolve(&abs) {
            if target != file {
                out.push(Import {
                    file: file.to_owned(),
                    line,
                    path: segs.join("::"),
                    target,
                });
            }
        }
    };

    // `use` items first: they also bind the names later paths may start with.
    let mut in_use = vec![false; toks.len()];
    let mut i = 0;
    while i < toks.len() {
        if toks[i].text == "use" {
            let mut paths = Vec::new();
            let end = use_tree(&toks, i + 1, &mut Vec::new(), &mut paths);
            let end = (end..toks.len())
                .find(|&j| toks[j].text == ";")
                .unwrap_or(toks.len());
            for (segs, line, name) in paths {
                if let Some(abs) = absolute(&segs, &here(i), &aliases) {
                    if let Some(name) = name {
                        aliases.insert(name, abs.clone());
                    }
                    add(&segs, line, abs);
                }
            }
            in_use[i..end].iter_mut().for_each(|u| *u = true);
            i = end;
        }
        i += 1;
    }
    // Paths anywhere else.
    for i in 0..toks.len() {
        let t = toks[i].text;
        let starts = !in_use[i]
            && is_word(t)
            && toks.get(i + 1).is_some_and(|n| n.text == "::")
            && !(i > 0 && matches!(toks[i - 1].text, "::" | "." | "use" | "mod"))
            && (matches!(t, "crate" | "super" | "self")
                || children.contains(t)
                || aliases.contains_key(t));
        if !starts {
            continue;
        }
        let mut segs = vec![t.to_owned()];
        let mut j = i + 1;
        while toks.get(j).is_some_and(|n| n.text == "::")
            && toks.get(j + 1).is_some_and(|n| is_word(n.text))
        {
            segs.push(toks[j + 1].text.to_owned());
            j += 2;
        }
        if let Some(abs) = absolute(&segs, &here(i), &aliases) {
            add(&segs, toks[i].line, abs);
        }
    }
    out
}

/// Every import of every file of `sources` (file name relative to `src/` → text).
fn imports(sources: &BTreeMap<String, String>) -> Vec<Import> {
    let modules: BTreeMap<Vec<String>, String> =
        sources.keys().map(|f| (module_of(f), f.clone())).collect();
    sources
        .iter()
        .flat_map(|(file, text)| imports_of(file, text, &modules))
        .collect()
}

/// The circles between files, each as the imports that make it.
fn circles(imports: &[Import]) -> Vec<Vec<Import>> {
    // The first import of each pair of files stands for the edge.
    let mut edges: BTreeMap<&str, BTreeMap<&str, &Import>> = BTreeMap::new();
    for i in imports {
        edges
            .entry(i.file.as_str())
            .or_default()
            .entry(i.target.as_str())
            .or_insert(i);
    }
    let nodes: BTreeSet<&str> = imports
        .iter()
        .flat_map(|i| [i.file.as_str(), i.target.as_str()])
        .collect();

    // Tarjan's strongly connected components.
    struct Walk<'a> {
        edges: &'a BTreeMap<&'a str, BTreeMap<&'a str, &'a Import>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        components: Vec<Vec<&'a str>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for &w in self.edges.get(v).into_iter().flat_map(|e| e.keys()) {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut walk = Walk {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        components: Vec::new(),
    };
    for &v in &nodes {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }

    // The shortest circle through each file of each component, each circle once.
    let mut out: Vec<Vec<Import>> = Vec::new();
    for component in walk.components.iter().filter(|c| c.len() > 1) {
        let inside: BTreeSet<&str> = component.iter().copied().collect();
        for &start in &inside {
            let mut came_from: BTreeMap<&str, &Import> = BTreeMap::new();
            let mut queue = VecDeque::from([start]);
            'search: while let Some(v) = queue.pop_front() {
                for (&w, &import) in edges.get(v).into_iter().flatten() {
                    if !inside.contains(w) || came_from.contains_key(w) {
                        continue;
                    }
                    came_from.insert(w, import);
                    if w == start {
                        break 'search;
                    }
                    queue.push_back(w);
                }
            }
            let mut circle = Vec::new();
            let mut at = start;
            while let Some(&import) = came_from.get(at) {
                circle.push(import.clone());
                at = import.file.as_str();
                if at == start {
                    break;
                }
            }
            circle.reverse();
            // Told from the same circle found from another of its files by its first
            // file: rotate so that it starts at its least.
            if let Some(least) = (0..circle.len()).min_by_key(|&k| circle[k].file.clone()) {
                circle.rotate_left(least);
            }
            if !out.contains(&circle) {
                out.push(circle);
            }
        }
    }
    out
}

/// Where `module` is in `layers`: (layer, place in the whole list).
fn rank(layers: &[&[&str]], module: &str) -> Option<(usize, usize)> {
    layers
        .iter()
        .enumerate()
        .flat_map(|(layer, modules)| modules.iter().map(move |m| (layer, *m)))
        .enumerate()
        .find(|(_, (_, m))| *m == module)
        .map(|(place, (layer, _))| (layer + 1, place))
}

/// Every breach of `layers` by `sources`, one line each; `upward` names the imports
/// (file, path as written) allowed to reach up anyway.
fn check(
    sources: &BTreeMap<String, String>,
    layers: &[&[&str]],
    upward: &[(&str, &str, &str)],
) -> Vec<String> {
    let mut problems = Vec::new();

    let declared: BTreeSet<String> = sources
        .get("lib.rs")
        .map(|lib| {
            let blanked = blank(lib);
            let toks = tokens(&blanked);
            toks.windows(3)
                .filter(|w| w[0].text == "mod" && w[2].text == ";")
                .map(|w| w[1].text.to_owned())
                .collect()
        })
        .unwrap_or_default();
    let placed: Vec<&str> = layers.iter().flat_map(|l| l.iter().copied()).collect();
    for module in &declared {
        if !placed.contains(&module.as_str()) {
            problems.push(format!(
                "src/lib.rs declares `mod {module}`, which LAYERS does not place"
            ));
        }
    }
    for (n, module) in placed.iter().enumerate() {
        if !declared.contains(*module) {
            problems.push(format!(
                "LAYERS names `{module}`, which src/lib.rs does not declare"
            ));
        }
        if placed[..n].contains(module) {
            problems.push(format!("LAYERS names `{module}` twice"));
        }
    }

    let imports = imports(sources);
    for circle in circles(&imports) {
        let files: Vec<&str> = circle
            .iter()
            .map(|i| i.file.as_str())
            .chain(circle.first().map(|i| i.file.as_str()))
            .collect();
        let mut text = format!("circle between files: {}", files.join(" -> "));
        for i in &circle {
            text.push_str(&format!(
                "\n    src/{}:{} imports `{}` (src/{})",
                i.file, i.line, i.path, i.target
            ));
        }
        problems.push(text);
    }

    let mut used = BTreeSet::new();
    for i in &imports {
        let (from, to) = (top_of(&i.file), top_of(&i.target));
        if from == to || to.is_empty() || from.is_empty() {
            continue;
        }
        let (Some((from_layer, from_place)), Some((to_layer, to_place))) =
            (rank(layers, &from), rank(layers, &to))
        else {
            continue; // reported above, as a module LAYERS does not place
        };
        if to_place < from_place {
            continue;
        }
        if let Some(allowed) = upward
            .iter()
            .find(|(file, path, _)| *file == i.file && *path == i.path)
        {
            used.insert((allowed.0, allowed.1));
            continue;
        }
        let how = if to_layer == from_layer {
            format!("listed after `{from}` in layer {from_layer}")
        } else {
            format!("in layer {to_layer}, above `{from}`'s layer {from_layer}")
        };
        problems.push(format!(
            "upward import: src/{}:{} imports `{}` (src/{}): `{to}` is {how}",
            i.file, i.line, i.path, i.target
        ));
    }
    if upward.len() > 1 {
        problems.push("UPWARD allows more than one upward import".to_owned());
    }
    for (file, path, _) in upward {
        if !used.contains(&(*file, *path)) {
            problems.push(format!(
                "UPWARD allows src/{file} to import `{path}`, which it does not (or not upward)"
            ));
        }
    }
    problems
}

/// Every `.rs` file under `dir`, by its path relative to `src/`, but the binary's.
fn read_sources(dir: &std::path::Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("src/ is readable") {
            let path = entry.expect("src/ is readable").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path
                    .strip_prefix(dir)
                    .expect("under src/")
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != "main.rs" {
                    let text = std::fs::read_to_string(&path).expect("a source file is UTF-8");
                    out.insert(rel, text);
                }
            }
        }
    }
    out
}

/// The numbered items of the `# Layout` section of `lib.rs`'s doc, each as the modules
/// of `modules` it names in backticks (`[`x`]` or `` `x` ``), in the order it first
/// names them.
fn layout_doc(lib: &str, modules: &BTreeSet<&str>) -> Vec<Vec<String>> {
    let section = lib
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .skip_while(|l| *l != "# Layout")
        .skip(1)
        .take_while(|l| !l.starts_with('#'));
    let mut items: Vec<String> = Vec::new();
    let mut in_item = false;
    for line in section {
        let numbered = line
            .split_once(". ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered {
            items.push(line.to_owned());
            in_item = true;
        } else if line.is_empty() {
            in_item = false;
        } else if let Some(item) = items.last_mut().filter(|_| in_item) {
            item.push(' ');
            item.push_str(line);
        }
    }
    items
        .iter()
        .map(|item| {
            let mut named: Vec<String> = Vec::new();
            for word in item.split('`').skip(1).step_by(2) {
                if modules.contains(word) && !named.iter().any(|n| n == word) {
                    named.push(word.to_owned());
                }
            }
            named
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn src_keeps_its_layers() {
        let problems = check(&read_sources(&src()), crate::LAYERS, crate::UPWARD);
        assert!(
            problems.is_empty(),
            "the imports under src/ break the layers of src/lib.rs (LAYERS):\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn the_layout_doc_names_the_modules_of_each_layer() {
        let lib = std::fs::read_to_string(src().join("lib.rs")).expect("src/lib.rs");
        let modules: BTreeSet<&str> = crate::LAYERS
            .iter()
            .flat_map(|l| l.iter().copied())
            .collect();
        let doc = layout_doc(&lib, &modules);
        let data: Vec<Vec<String>> = crate::LAYERS
            .iter()
            .map(|l| l.iter().map(|m| m.to_string()).collect())
            .collect();
        assert_eq!(
            doc, data,
            "the numbered list of src/lib.rs's `# Layout` names the modules of each layer, in LAYERS' order"
        );
    }

    fn sources(files: &[(&str, &str)]) -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect()
    }

    const LIB: &str = "pub mod low;\npub mod high;\n";

    #[test]
    fn a_clean_graph_passes() {
        let files = sources(&[
            ("lib.rs", LIB),
            ("low/mod.rs", "pub mod a;\npub use a::A;\n"),
            ("low/a.rs", "pub struct A;\n"),
            (
                "high.rs",
                "use crate::low::{self, A};\nfn f() -> low::a::A { crate::low::A }\n",
            ),
        ]);
        assert_eq!(
            check(&files, &[&["low"], &["high"]], &[]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_circle_and_an_upward_import_are_named() {
        let files = sources(&[
            ("lib.rs", LIB),
            ("low/mod.rs", "pub mod a;\npub mod b;\n"),
            ("low/a.rs", "use super::b::B;\npub struct A;\n"),
            (
                "low/b.rs",
                "pub struct B;\n// use crate::high::H; (a comment is no import)\n\
                 fn f() { let _ = \"crate::high::H\"; let _: crate::low::a::A; }\n",
            ),
            ("high.rs", "pub struct H;\n"),
        ]);
        let problems = check(&files, &[&["low"], &["high"]], &[]);
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0].contains("circle between files: low/a.rs -> low/b.rs -> low/a.rs")
                && problems[0].contains("src/low/a.rs:1 imports `super::b::B`")
                && problems[0].contains("src/low/b.rs:3 imports `crate::low::a::A`"),
            "{}",
            problems[0]
        );

        let files = sources(&[
            ("lib.rs", LIB),
            ("low/mod.rs", "pub mod a;\n"),
            ("low/a.rs", "\n#[x(body = crate::high::H)]\npub struct A;\n"),
            ("high.rs", "pub struct H;\n"),
        ]);
        let problems = check(&files, &[&["low"], &["high"]], &[]);
        assert_eq!(
            problems,
            [
                "upward import: src/low/a.rs:2 imports `crate::high::H` (src/high.rs): \
              `high` is in layer 2, above `low`'s layer 1"
            ]
        );
        // Named in UPWARD, it passes; an allowance nothing uses does not.
        let allowed = [("low/a.rs", "crate::high::H", "why")];
        assert_eq!(
            check(&files, &[&["low"], &["high"]], &allowed),
            Vec::<String>::new()
        );
        let problems = check(&files, &[&["high", "low"]], &allowed);
        assert!(problems[0].contains("which it does not"), "{problems:?}");
        // Later in the same layer is up too.
        let problems = check(&files, &[&["low", "high"]], &[]);
        assert!(
            problems[0].contains("listed after `low` in layer 1"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_module_without_a_layer_is_named() {
        let files = sources(&[("lib.rs", "mod a;\nmod b;\n"), ("a.rs", ""), ("b.rs", "")]);
        assert_eq!(
            check(&files, &[&["a"], &["c"]], &[]),
            [
                "src/lib.rs declares `mod b`, which LAYERS does not place",
                "LAYERS names `c`, which src/lib.rs does not declare",
            ]
        );
    }

    #[test]
    fn every_form_of_import_is_read() {
        let files = sources(&[
            ("lib.rs", "pub mod a;\npub mod b;\n"),
            ("a/mod.rs", "pub mod x;\npub mod y;\npub use x::X;\n"),
            ("a/x.rs", "pub struct X;\n"),
            ("a/y.rs", "pub fn f() {}\n"),
            ("b/mod.rs", "pub mod z;\n"),
            ("b/z.rs", "pub struct Z;\n"),
        ]);
        let modules: BTreeMap<Vec<String>, String> =
            files.keys().map(|f| (module_of(f), f.clone())).collect();
        let text = r##"
use crate::{a::{self, x::X as Ex}, b::z};
use super::z::Z;
const S: &str = r#"crate::a::y"#;
fn g() -> char { '"' }
fn f<'a>(_: &'a str) {
    a::y::f();
    z::Z;
    crate::a::y::f();
}
#[cfg(test)]
mod tests {
    use super::super::z::*;
}
"##;
        let found: Vec<(usize, String, String)> = imports_of("b/w.rs", text, &modules)
            .into_iter()
            .map(|i| (i.line, i.path, i.target))
            .collect();
        let want = [
            (2, "crate::a", "a/mod.rs"),
            (2, "crate::a::x::X", "a/x.rs"),
            (2, "crate::b::z", "b/z.rs"),
            (3, "super::z::Z", "b/z.rs"),
            (13, "super::super::z", "b/z.rs"),
            (7, "a::y::f", "a/y.rs"),
            (8, "z::Z", "b/z.rs"),
            (9, "crate::a::y::f", "a/y.rs"),
        ];
        let want: Vec<(usize, String, String)> = want
            .iter()
            .map(|(l, p, t)| (*l, p.to_string(), t.to_string()))
            .collect();
        assert_eq!(found, want);
        // A child module through the parent's re-export.
        let found: Vec<String> = imports_of("a/mod.rs", &files["a/mod.rs"], &modules)
            .into_iter()
            .map(|i| i.target)
            .collect();
        assert_eq!(found, ["a/x.rs"]);
    }
}
