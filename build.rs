// The migrations are embedded into the binary at compile time; rebuild when they change.
// The commit the binary is built from is embedded too (`locallife --version`): from
// `LOCALLIFE_COMMIT` when set (a build without the repository, such as an image build
// from a source tarball), else from git, else "unknown".
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=LOCALLIFE_COMMIT");
    for path in [".git/HEAD", ".git/refs/heads", ".git/packed-refs"] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("LOCALLIFE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            let commit = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (out.status.success() && !commit.is_empty()).then_some(commit)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LOCALLIFE_COMMIT={commit}");
}
