//! Reading files that a config names, bounded in size: a path to a device or a pipe that never
//! ends (`/dev/zero`), or a file far larger than any config, secret or key set, is refused
//! instead of read into memory.

use std::io::{self, Read};
use std::path::Path;

/// Largest config file, secret file, PEM file or `jwks_file` read (1 MiB).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The whole of `path`, if it holds at most `limit` bytes; longer is an `InvalidData` error
/// saying so. Reads at most `limit + 1` bytes, whatever the file claims to be.
pub fn read(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_is_refused_after_the_limit() {
        let e = read(Path::new("/dev/zero"), 1024).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("longer than 1024 bytes"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, [7u8; 1024]).unwrap();
        assert_eq!(read(&f, 1024).unwrap().len(), 1024);
    }
}
