//! The Docker image, checked without a container engine (none runs on the
//! build machines): the build stage makes the release binary and the final
//! stage copies exactly that; every file the final stage copies exists;
//! and the copied config, run from the image's WORKDIR as its CMD says,
//! passes `--check` with every file it names resolving.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The instructions of the final stage (after the last FROM), joined
/// across line continuations.
fn final_stage(dockerfile: &str) -> Vec<String> {
    let joined = dockerfile.replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..].iter().map(|l| l.to_string()).collect()
}

#[test]
fn the_image_copies_the_release_binary_and_its_config_resolves() {
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "the build stage makes the release binary"
    );
    let stage = final_stage(&dockerfile);
    assert!(
        stage
            .iter()
            .any(|l| l == "COPY --from=build /src/target/release/sluice /usr/local/bin/sluice"),
        "the final stage copies the release binary: {stage:#?}"
    );
    // Stage the final image's files under a temporary root.
    let image = std::env::temp_dir().join(format!("sluice-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&image);
    let inside = |p: &str| -> PathBuf { image.join(p.trim_start_matches('/')) };
    let mut workdir = None;
    let mut cmd = None;
    for l in &stage {
        let words: Vec<&str> = l.split_whitespace().collect();
        match words[0] {
            "COPY" if !l.contains("--from=") => {
                let (src, dst) = (words[1], words[2]);
                let from = root().join(src);
                assert!(from.exists(), "COPY {src}: not in the repository");
                copy(&from, &inside(dst));
            }
            "WORKDIR" => workdir = Some(inside(words[1])),
            "CMD" => cmd = Some(l.clone()),
            _ => {}
        }
    }
    // The CMD's config path, inside the image.
    let cmd = cmd.expect("a CMD");
    let args: Vec<String> = serde_json::from_str(cmd.trim_start_matches("CMD").trim()).unwrap();
    assert_eq!(args[0], "--config");
    let config = inside(&args[1]);
    assert!(config.exists(), "{} is not copied into the image", args[1]);
    // Relative paths in the config resolve against WORKDIR, as in the image.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["--check", "--config", config.to_str().unwrap()])
        .current_dir(workdir.expect("a WORKDIR"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the image's config does not check:\n{text}"
    );
    let _ = std::fs::remove_dir_all(&image);
}

fn copy(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}
