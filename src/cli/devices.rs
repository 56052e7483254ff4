use tessel_runtime::{device, Device};

pub fn run() -> super::CliResult {
    let count = device::device_count()?;
    for ordinal in 0..count {
        let dev = Device::open(ordinal)?;
        let (major, minor) = dev.compute_capability()?;
        println!("{ordinal}: {} (sm_{major}{minor})", dev.name()?);
    }
    Ok(())
}
