use tessel_compiler::target::TARGETS;

pub fn run() -> super::CliResult {
    println!(
        "{:<8} {:>4} {:>6} {:>10}  features",
        "arch", "sm", "ptx", "smem KiB"
    );
    for t in TARGETS {
        let features: Vec<_> = t.features().iter().map(|f| f.name()).collect();
        println!(
            "{:<8} {:>4} {:>6} {:>10}  {}",
            t.name,
            t.sm,
            t.ptx.to_string(),
            t.max_shared_bytes / 1024,
            features.join(", ")
        );
    }
    Ok(())
}
