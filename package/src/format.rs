//! The `.tpkg` file: one file holding a manifest and the PTX of every kernel.
//!
//! ```text
//! offset 0   8 bytes   magic "TESSELPK"
//! offset 8   u32 LE    format version
//! offset 12  u64 LE    manifest length M
//! offset 20  M bytes   manifest, JSON (UTF-8)
//! offset 20+M          blob section: each kernel's PTX at the offset/length its entry gives,
//!                      checked against the entry's SHA-256
//! ```
//! Reading verifies everything before anything is used, and every way a file can be wrong is its
//! own error.

use std::collections::HashSet;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::manifest::{Blob, KernelEntry, Manifest, TargetSpec};

pub const MAGIC: &[u8; 8] = b"TESSELPK";
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8;

#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("cannot read package {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not a tessel package (bad magic bytes)")]
    BadMagic,
    #[error(
        "package format version {found} is not supported (this tessel reads version {supported})"
    )]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("package is truncated: {what} needs bytes up to {needed}, the file has {len}")]
    Truncated { what: String, needed: u64, len: u64 },
    #[error("package manifest is malformed: {0}")]
    Manifest(String),
    #[error("kernel `{kernel}` fails its checksum: the PTX was altered or corrupted")]
    ChecksumMismatch { kernel: String },
    #[error("kernel `{kernel}`'s PTX is not UTF-8 text")]
    PtxNotText { kernel: String },
    #[error("kernel `{name}` appears twice in the package")]
    DuplicateKernel { name: String },
    #[error("the package has no kernel `{name}`; it has: {available}")]
    MissingKernel { name: String, available: String },
}

/// A verified package in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Package {
    pub manifest: Manifest,
    /// PTX of each kernel, in manifest order.
    ptx: Vec<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Package {
    /// Parses and verifies a package from its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Package, PackageError> {
        let len = bytes.len() as u64;
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(PackageError::BadMagic);
        }
        if bytes.len() < HEADER {
            return Err(PackageError::Truncated {
                what: "the header".into(),
                needed: HEADER as u64,
                len,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(PackageError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let mlen = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        let mend = (HEADER as u64)
            .checked_add(mlen)
            .filter(|e| *e <= len)
            .ok_or(PackageError::Truncated {
                what: "the manifest".into(),
                needed: (HEADER as u64).saturating_add(mlen),
                len,
            })?;
        let manifest: Manifest = serde_json::from_slice(&bytes[HEADER..mend as usize])
            .map_err(|e| PackageError::Manifest(e.to_string()))?;
        if manifest.format_version != version {
            return Err(PackageError::Manifest(format!(
                "manifest says format version {}, header says {version}",
                manifest.format_version
            )));
        }
        let blobs = &bytes[mend as usize..];
        let mut names = HashSet::new();
        let mut ptx = Vec::with_capacity(manifest.kernels.len());
        for k in &manifest.kernels {
            if !names.insert(k.name.as_str()) {
                return Err(PackageError::DuplicateKernel {
                    name: k.name.clone(),
                });
            }
            let end = k
                .ptx
                .offset
                .checked_add(k.ptx.len)
                .filter(|e| *e <= blobs.len() as u64)
                .ok_or(PackageError::Truncated {
                    what: format!("the PTX of `{}`", k.name),
                    needed: mend.saturating_add(k.ptx.offset).saturating_add(k.ptx.len),
                    len,
                })?;
            let blob = &blobs[k.ptx.offset as usize..end as usize];
            if sha256_hex(blob) != k.ptx.sha256 {
                return Err(PackageError::ChecksumMismatch {
                    kernel: k.name.clone(),
                });
            }
            let text = String::from_utf8(blob.to_vec()).map_err(|_| PackageError::PtxNotText {
                kernel: k.name.clone(),
            })?;
            ptx.push(text);
        }
        Ok(Package { manifest, ptx })
    }

    pub fn read(path: &Path) -> Result<Package, PackageError> {
        let bytes = std::fs::read(path).map_err(|source| PackageError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Package::from_bytes(&bytes)
    }

    /// A kernel's entry and PTX, or `MissingKernel` naming the ones there are.
    pub fn kernel(&self, name: &str) -> Result<(&KernelEntry, &str), PackageError> {
        self.manifest
            .kernels
            .iter()
            .zip(&self.ptx)
            .find(|(k, _)| k.name == name)
            .map(|(k, p)| (k, p.as_str()))
            .ok_or_else(|| PackageError::MissingKernel {
                name: name.into(),
                available: self
                    .manifest
                    .kernels
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The entry of kernel `entry` (its PTX entry symbol) specialised with every `NAME=VALUE`
    /// of `consts`: how operators pick a variant out of a package built with `--variant`.
    pub fn find_variant(&self, entry: &str, consts: &[(&str, &str)]) -> Option<&KernelEntry> {
        self.manifest.kernels.iter().find(|e| {
            e.entry == entry
                && consts
                    .iter()
                    .all(|(n, v)| e.consts.iter().any(|(en, ev)| en == n && ev == v))
        })
    }

    pub fn kernels(&self) -> impl Iterator<Item = (&KernelEntry, &str)> {
        self.manifest
            .kernels
            .iter()
            .zip(self.ptx.iter().map(String::as_str))
    }
}

/// Assembles a package: add kernels with their PTX, then write.
#[derive(Debug, Clone)]
pub struct PackageBuilder {
    target: TargetSpec,
    kernels: Vec<KernelEntry>,
    blobs: Vec<u8>,
}

impl PackageBuilder {
    pub fn new(arch: &str, ptx_isa: &str) -> Self {
        Self {
            target: TargetSpec {
                arch: arch.into(),
                ptx_isa: ptx_isa.into(),
            },
            kernels: Vec::new(),
            blobs: Vec::new(),
        }
    }

    /// Adds a kernel; its `ptx` blob field is filled in here.
    pub fn add(&mut self, mut entry: KernelEntry, ptx: &str) -> Result<(), PackageError> {
        if self.kernels.iter().any(|k| k.name == entry.name) {
            return Err(PackageError::DuplicateKernel { name: entry.name });
        }
        entry.ptx = Blob {
            offset: self.blobs.len() as u64,
            len: ptx.len() as u64,
            sha256: sha256_hex(ptx.as_bytes()),
        };
        self.blobs.extend_from_slice(ptx.as_bytes());
        self.kernels.push(entry);
        Ok(())
    }

    /// Number of kernels added so far.
    pub fn len(&self) -> usize {
        self.kernels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kernels.is_empty()
    }

    /// The kernels added so far, in order, each with its PTX.
    pub fn kernels(&self) -> impl Iterator<Item = (&KernelEntry, &str)> {
        self.kernels.iter().map(|k| {
            let start = k.ptx.offset as usize;
            let ptx = &self.blobs[start..start + k.ptx.len as usize];
            // Blobs are only ever appended from &str, so every slice is valid UTF-8.
            (k, std::str::from_utf8(ptx).unwrap_or_default())
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            tessel_version: env!("CARGO_PKG_VERSION").into(),
            target: self.target.clone(),
            kernels: self.kernels.clone(),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("the manifest always serialises");
        let mut out = Vec::with_capacity(HEADER + json.len() + self.blobs.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&self.blobs);
        out
    }

    pub fn write(&self, path: &Path) -> Result<(), PackageError> {
        std::fs::write(path, self.to_bytes()).map_err(|source| PackageError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}
