//! Checks on what a user asks for, made before anything is built or allocated: every `NAME=` of
//! `-D`, `--shape`, `--scalar` and `--variant` names something the kernel has (a typo would
//! otherwise silently keep a default), sizes are whole numbers a kernel can index, and a problem
//! fits the machine.

use std::collections::HashMap;

use tessel_compiler::diag::closest;

/// Fails unless every name in `given` is one of `known`; `flag` and `what` ("scalar parameter")
/// word the error, which suggests the closest known name or lists them all.
pub fn check_names<'a>(
    flag: &str,
    given: impl IntoIterator<Item = &'a str>,
    what: &str,
    known: &[String],
) -> Result<(), String> {
    for name in given {
        if known.iter().any(|k| k == name) {
            continue;
        }
        let hint = match closest(name, known) {
            Some(near) => format!("; did you mean `{near}`?"),
            None if known.is_empty() => format!(" (it has no {what}s)"),
            None => format!(" (it has: {})", known.join(", ")),
        };
        return Err(format!("{flag} {name}: there is no {what} `{name}`{hint}"));
    }
    Ok(())
}

/// `--shape NAME=SIZE` values: whole numbers from 0 to 2^31 − 1, the largest extent kernels
/// index with (i32). `1e10`, `-5`, `2.5` and `nan` are refused rather than rounded.
pub fn sizes(items: &[String]) -> Result<HashMap<String, usize>, String> {
    let mut out = HashMap::new();
    for (k, v) in super::key_values(items, "--shape")? {
        let n = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
            v.parse::<u64>().ok()
        } else {
            return Err(format!(
                "--shape {k}={v}: not a size (a whole number such as 4096)"
            ));
        };
        match n {
            Some(n) if n <= i32::MAX as u64 => {
                if out.insert(k.clone(), n as usize).is_some() {
                    return Err(format!("--shape {k} is given twice"));
                }
            }
            _ => {
                return Err(format!(
                    "--shape {k}={v}: beyond {}, the largest extent a kernel indexes (i32)",
                    i32::MAX
                ))
            }
        }
    }
    Ok(out)
}

/// The element count of a tensor of `shape`, refusing one whose count overflows.
pub fn elements(name: &str, shape: &[usize]) -> Result<usize, String> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("tensor `{name}` of shape {shape:?} has too many elements to hold"))
}

/// `bytes` as a short human figure (GB to two places below 10 GB).
pub fn human(bytes: u128) -> String {
    let gb = bytes as f64 / 1e9;
    if gb >= 10.0 {
        format!("{gb:.0} GB")
    } else if gb >= 0.01 {
        format!("{gb:.2} GB")
    } else {
        format!("{:.1} MB", bytes as f64 / 1e6)
    }
}

/// Memory the OS can give this process now (Linux `MemAvailable`), if it says.
fn available_host_memory() -> Option<u128> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Fails when `bytes` of host memory (for `what`) is more than the machine has available: an
/// allocation that size aborts the process instead of returning an error.
pub fn check_host_memory(bytes: u128, what: &str) -> Result<(), String> {
    match available_host_memory() {
        Some(free) if bytes > free => Err(format!(
            "{what} need {} of host memory; this machine has {} available",
            human(bytes),
            human(free)
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn sizes_are_whole_numbers_in_i32_range() {
        let ok = sizes(&args(&["M=0", "N=2147483647"])).unwrap();
        assert_eq!((ok["M"], ok["N"]), (0, i32::MAX as usize));
        for bad in ["M=-5", "M=2.5", "M=nan", "M=1e10", "M=", "M=+3"] {
            let e = sizes(&args(&[bad])).unwrap_err();
            assert!(e.contains("not a size"), "{bad}: {e}");
        }
        let e = sizes(&args(&["M=2147483648"])).unwrap_err();
        assert!(e.contains("largest extent"), "{e}");
        let e = sizes(&args(&["M=1000000000000000000000000"])).unwrap_err();
        assert!(e.contains("largest extent"), "{e}");
        assert!(sizes(&args(&["M=1", "M=2"])).unwrap_err().contains("twice"));
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        let known = vec!["eps".to_string(), "scale".to_string()];
        let e = check_names("--scalar", ["epss"], "scalar parameter", &known).unwrap_err();
        assert_eq!(
            e,
            "--scalar epss: there is no scalar parameter `epss`; did you mean `eps`?"
        );
        let e = check_names("--scalar", ["zzzzzz"], "scalar parameter", &known).unwrap_err();
        assert!(e.ends_with("(it has: eps, scale)"), "{e}");
        assert!(check_names("--scalar", ["eps"], "scalar parameter", &known).is_ok());
    }

    #[test]
    fn element_counts_that_overflow_are_refused() {
        assert_eq!(elements("a", &[3, 4]).unwrap(), 12);
        assert!(elements("a", &[1 << 31; 9]).is_err());
    }
}
