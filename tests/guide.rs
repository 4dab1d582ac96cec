//! The guide (`docs/`) kept honest: every chapter is compiled by the doc tests and listed in
//! the table of contents, every program a chapter shows as an example is that example's
//! text, no code block escapes the tests, and every relative link (in the guide and the
//! READMEs) points at a file and heading that exist.
//!
//! The examples the guide shows are started as servers in `tests/guide_examples.rs`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The guide's chapters: every `docs/*.md`, sorted.
fn chapters() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    found.sort();
    assert!(found.len() > 1, "no chapters found in docs/");
    found
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn name(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A fenced code block: its info string, its text, the line its fence opens on, and the
/// `<!-- example: NAME -->` marker on the line before it, if any.
struct Block {
    info: String,
    text: String,
    line: usize,
    example: Option<String>,
    /// `<!-- compile-only: REASON -->`: a program that serves until stopped or needs what a
    /// test cannot give it (certificate files at fixed paths, a remote host), compiled but
    /// not started here; the reason names the test that runs the same code.
    compile_only: Option<String>,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    let mut previous: Option<&str> = None;
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        let ticks = trimmed.chars().take_while(|&c| c == '`').count();
        if ticks < 3 || line.len() - trimmed.len() > 3 {
            if !line.trim().is_empty() {
                previous = Some(line);
            }
            continue;
        }
        let info = trimmed[ticks..].trim().to_string();
        let fence = &trimmed[..ticks];
        let mut text = String::new();
        for (_, inner) in lines.by_ref() {
            let t = inner.trim_start();
            if t.starts_with(fence) && t.trim_start_matches('`').trim().is_empty() {
                break;
            }
            text.push_str(inner);
            text.push('\n');
        }
        let example = previous
            .map(str::trim)
            .and_then(|p| p.strip_prefix("<!-- example:"))
            .and_then(|p| p.strip_suffix("-->"))
            .map(|p| p.trim().to_string());
        let compile_only = previous
            .map(str::trim)
            .and_then(|p| p.strip_prefix("<!-- compile-only:"))
            .and_then(|p| p.strip_suffix("-->"))
            .map(|p| p.trim().to_string());
        found.push(Block {
            info,
            text,
            line: i + 1,
            example,
            compile_only,
        });
        previous = None;
    }
    found
}

#[test]
fn every_chapter_is_compiled_by_the_doc_tests() {
    let lib = read(&root().join("src/lib.rs"));
    for chapter in chapters() {
        let file = chapter.file_name().unwrap().to_string_lossy().to_string();
        let include = format!("include_str!(\"../docs/{file}\")");
        assert!(
            lib.contains(&include),
            "docs/{file} is not compiled by the doc tests: add `#[doc = {include}]` to the \
             `guide` module at the bottom of src/lib.rs"
        );
    }
}

#[test]
fn every_chapter_is_in_the_table_of_contents() {
    let contents = read(&root().join("docs/README.md"));
    for chapter in chapters() {
        let file = chapter.file_name().unwrap().to_string_lossy().to_string();
        if file == "README.md" {
            continue;
        }
        assert!(
            contents.contains(&format!("]({file})")),
            "docs/{file} is not linked from the guide's table of contents, docs/README.md: \
             link it there (a chapter listed as coming with its feature becomes a link)"
        );
    }
}

/// Chapter 11's entries name the files their features will bring (`tls.md`, ...); once a
/// file exists, its entry must become a link.
#[test]
fn chapters_still_to_come_do_not_exist_yet() {
    let contents = read(&root().join("docs/README.md"));
    for line in contents
        .lines()
        .filter(|l| l.contains("coming with its feature"))
    {
        for word in line.split('`').skip(1).step_by(2) {
            if let Some(file) = word.strip_suffix(".md") {
                assert!(
                    !root().join("docs").join(word).exists(),
                    "docs/{word} exists now: in docs/README.md, make its entry a link \
                     ([...]({file}.md)) and drop \"coming with its feature\""
                );
            }
        }
    }
}

#[test]
fn the_programs_the_guide_shows_are_the_examples() {
    let mut shown = BTreeSet::new();
    for chapter in chapters() {
        for block in blocks(&read(&chapter)) {
            let Some(example) = block.example else {
                continue;
            };
            let path = root().join("examples").join(format!("{example}.rs"));
            let text = read(&path);
            assert!(
                block.text == text,
                "{}:{}: the block marked `example: {example}` differs from {}; copy the \
                 example's text into the chapter (or fix the example)",
                name(&chapter),
                block.line,
                name(&path)
            );
            shown.insert(example);
        }
    }
    assert!(!shown.is_empty(), "no example marker found in the guide");
}

/// `cargo test` compiles and runs every Rust block; `no_run` is for programs that serve
/// forever, and those are examples that `tests/guide_examples.rs` starts. Nothing is
/// `ignore`d, and a block without a language (which rustdoc would compile as Rust) says
/// what it is.
#[test]
fn every_code_block_is_tested_or_plainly_not_code() {
    for chapter in chapters() {
        for block in blocks(&read(&chapter)) {
            let at = format!("{}:{}", name(&chapter), block.line);
            let mut words = block.info.split(',').map(str::trim);
            let language = words.next().unwrap_or_default();
            let flags: Vec<&str> = words.collect();
            match language {
                "rust" => {
                    for flag in &flags {
                        match *flag {
                            "no_run" => assert!(
                                block.example.is_some()
                                    || block.compile_only.as_ref().is_some_and(|r| r.len() > 20),
                                "{at}: a `no_run` block must be an example that a test starts \
                                 (mark it `<!-- example: NAME -->` and add the program to \
                                 examples/), or say why it cannot run here and which test runs \
                                 the same code (`<!-- compile-only: REASON -->`); a program that \
                                 ends on its own is run as it is"
                            ),
                            "compile_fail" => {}
                            other => panic!(
                                "{at}: `{other}` keeps a block from being run; the guide's \
                                 blocks are compiled and run (`no_run` only for examples)"
                            ),
                        }
                    }
                }
                "text" | "sh" | "toml" | "json" => {}
                "" => panic!(
                    "{at}: a code block without a language is compiled as Rust by rustdoc; \
                     say `text` for shell sessions and output"
                ),
                other => panic!("{at}: unexpected code block language `{other}`"),
            }
        }
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut inside_code = false;
    let mut found = BTreeSet::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            inside_code = !inside_code;
        } else if !inside_code && line.starts_with('#') {
            let heading = line.trim_start_matches('#');
            found.insert(slug(&heading.replace('`', "")));
        }
    }
    found
}

/// The targets of inline links `[text](target)` and reference definitions `[x]: target`
/// outside code blocks and code spans.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut inside_code = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            inside_code = !inside_code;
            continue;
        }
        if inside_code {
            continue;
        }
        // Drop code spans, where brackets are not links.
        let mut plain = String::new();
        for (n, part) in line.split('`').enumerate() {
            if n % 2 == 0 {
                plain.push_str(part);
            }
        }
        let mut rest = plain.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            found.push((i + 1, after[..end].trim().to_string()));
            rest = &after[end..];
        }
        if let Some(definition) = plain.trim_start().strip_prefix('[') {
            if let Some((_, target)) = definition.split_once("]: ") {
                found.push((i + 1, target.trim().to_string()));
            }
        }
    }
    found
}

#[test]
fn relative_links_point_at_files_and_headings_that_exist() {
    let mut documents = chapters();
    for extra in [
        "README.md",
        "protocols/README.md",
        "endpoints/README.md",
        "bench/README.md",
    ] {
        documents.push(root().join(extra));
    }
    for document in documents {
        let text = read(&document);
        let dir = document.parent().expect("a directory");
        for (line, target) in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let at = format!("{}:{line}", name(&document));
            let (file, anchor) = match target.split_once('#') {
                Some((file, anchor)) => (file, Some(anchor)),
                None => (target.as_str(), None),
            };
            let path = if file.is_empty() {
                document.clone()
            } else {
                dir.join(file)
            };
            assert!(
                path.exists(),
                "{at}: the link `{target}` points at {}, which does not exist",
                path.display()
            );
            if let Some(anchor) = anchor {
                if path.extension().is_some_and(|e| e == "md") {
                    assert!(
                        anchors(&read(&path)).contains(anchor),
                        "{at}: the link `{target}` names a heading that {} does not have",
                        name(&path)
                    );
                }
            }
        }
    }
}

#[test]
fn the_checks_find_what_they_look_for() {
    let sample = "intro\n<!-- example: demo -->\n```rust,no_run\nfn main() {}\n```\n\
                  see [the `x` part](other.md#the-x-part)\n[y]: y.md\n## The `x` part\n";
    let found = blocks(sample);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].info, "rust,no_run");
    assert_eq!(found[0].text, "fn main() {}\n");
    assert_eq!(found[0].example.as_deref(), Some("demo"));
    assert_eq!(
        links(sample),
        [
            (6, "other.md#the-x-part".to_string()),
            (7, "y.md".to_string())
        ]
    );
    assert!(anchors(sample).contains("the-x-part"));
    assert_eq!(
        slug("3. Writing clients: Happy Eyeballs!"),
        "3-writing-clients-happy-eyeballs"
    );
}
