// Shared by test crates through `include!`: finds ptxas and runs it on PTX text.
//
// Locally a missing ptxas skips PTX validation with a printed reason; in CI (CI=true) it fails the
// run, because then the validation would silently never happen.

use std::path::PathBuf;
use std::process::Command;

pub struct Ptxas {
    path: Option<PathBuf>,
}

impl Ptxas {
    pub fn find() -> Self {
        let from_env = std::env::var_os("PTXAS").map(PathBuf::from);
        // The venv's python3.X directory depends on the machine's Python.
        let local = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .filter_map(|d| std::fs::read_dir(d.join(".venv-ptxas/lib")).ok())
            .flat_map(|entries| entries.flatten())
            .map(|e| e.path().join("site-packages/nvidia/cu13/bin/ptxas"))
            .find(|p| p.exists());
        let path = from_env.filter(|p| p.exists()).or(local);
        if path.is_none() {
            let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
            assert!(!ci, "ptxas not found (set PTXAS or run `make deps`): CI must validate PTX");
            eprintln!("SKIP ptxas validation: ptxas not found (set PTXAS or run `make deps`)");
        }
        Self { path }
    }

    /// Assembles `ptx` for `arch`; Err holds ptxas's complaint. Ok(None) when ptxas is absent.
    pub fn assemble(&self, ptx: &str, arch: &str) -> Result<Option<String>, String> {
        let Some(ptxas) = &self.path else {
            return Ok(None);
        };
        let dir = std::env::temp_dir().join(format!("tessel-ptxas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // One file per call: tests assembling the same PTX on several threads must not remove
        // each other's input.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = dir.join(format!("{arch}-{:x}-{call}.ptx", fxhash(ptx)));
        std::fs::write(&file, ptx).map_err(|e| e.to_string())?;
        let out = Command::new(ptxas)
            .arg(format!("-arch={arch}"))
            .arg("-v")
            .arg(&file)
            .arg("-o")
            .arg("/dev/null")
            .output()
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&file);
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() {
            Ok(Some(log))
        } else {
            Err(format!("ptxas rejected PTX for {arch}:\n{log}\n--- PTX ---\n{ptx}"))
        }
    }
}

fn fxhash(s: &str) -> u64 {
    s.bytes()
        .fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3))
}
