//! One table of defaults (`sluice::config::defaults::DEFAULTS`), and the two
//! places a user reads them agree with it: the example config
//! (`config/sluice.toml`) and the README's configuration reference list
//! every key that has a default, with that default.

use sluice::config::defaults::DEFAULTS;

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The README heading marker of a config section.
fn heading(section: &str) -> String {
    match section {
        "listener" => "`[[listener]]`".into(),
        "route" => "`[[route]]`".into(),
        s if s.starts_with("pool") => format!("`[pool.NAME{}]`", &s[4..]),
        s => format!("`[{s}]`"),
    }
}

/// The README's table rows after the (first) heading or paragraph that
/// names `marker`, up to the next heading.
fn readme_rows<'a>(readme: &'a str, marker: &str) -> Vec<&'a str> {
    let mut lines = readme
        .lines()
        .skip_while(|l| !(l.contains(marker) && (l.starts_with('#') || l.ends_with(':'))));
    lines.next();
    lines
        .take_while(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with("| `"))
        .collect()
}

/// The example config's `key = value  # comment` lines, by section.
fn example_lines(example: &str) -> Vec<(String, String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in example.lines() {
        let t = line.trim();
        if let Some(h) = t.strip_prefix('[') {
            let h = h.trim_start_matches('[');
            let name = h.split(']').next().unwrap_or("");
            section = match name.split('.').collect::<Vec<_>>().as_slice() {
                ["pool", _] => "pool".into(),
                ["pool", _, rest @ ..] => format!("pool.{}", rest.join(".")),
                _ => name.to_string(),
            };
            continue;
        }
        let Some((key, rest)) = t.split_once(" = ") else {
            continue;
        };
        let (value, comment) = rest.split_once('#').unwrap_or((rest, ""));
        out.push((
            section.clone(),
            key.trim().to_string(),
            value.trim().to_string(),
            comment.trim().to_string(),
        ));
    }
    out
}

#[test]
fn the_example_config_and_the_readme_list_every_default() {
    let readme = read("README.md");
    let example = example_lines(&read("config/sluice.toml"));
    let mut problems = Vec::new();
    for (key, default) in DEFAULTS {
        let (section, name) = key.rsplit_once('.').unwrap();
        let row = format!("| `{name}` | `{default}` |");
        if !readme_rows(&readme, &heading(section))
            .iter()
            .any(|r| r.starts_with(&row))
        {
            problems.push(format!("README: no row {row} under {}", heading(section)));
        }
        let lines: Vec<_> = example
            .iter()
            .filter(|(s, k, _, _)| s == section && k == name)
            .collect();
        if lines.is_empty() {
            problems.push(format!("config/sluice.toml: no {name} in [{section}]"));
        } else if !lines
            .iter()
            .any(|(_, _, v, c)| v == default || c.contains(&format!("default {default}")))
        {
            problems.push(format!(
                "config/sluice.toml: {key} is neither {default} nor says its default"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_documents_no_key_the_table_does_not_know_of() {
    // Every `| `key` | `literal` |` row of a section the table covers names a
    // key of the table (rows with "required", "none" or prose are keys
    // without a literal default).
    let readme = read("README.md");
    let sections: std::collections::BTreeSet<&str> = DEFAULTS
        .iter()
        .map(|(k, _)| k.rsplit_once('.').unwrap().0)
        .collect();
    let mut problems = Vec::new();
    for section in sections {
        for row in readme_rows(&readme, &heading(section)) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let (name, default) = (cells[1].trim_matches('`'), cells[2]);
            if !default.starts_with('`') {
                continue;
            }
            let key = format!("{section}.{name}");
            if !DEFAULTS.iter().any(|(k, _)| *k == key) {
                problems.push(format!(
                    "README documents {key} = {default}, the defaults table has no such key"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
