//! NumPy `.npy` files of little-endian f32 (format version 1.0), written and read.

use std::path::Path;

use crate::net::Shape;

/// What can go wrong reading an `.npy` file; every message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {reason}")]
pub struct NpyError {
    pub file: String,
    pub reason: String,
}

/// The bytes of an `.npy` file holding `data` (C order) with `shape`.
pub fn npy_bytes(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Largest header accepted (NumPy writes under 100 bytes; version 2 allows 4 GB).
const MAX_HEADER: usize = 1 << 20;

/// Reads an `.npy` file of f32 in C order: (shape, values). Reads only what the header
/// declares (a pipe or `/dev/zero` cannot make it read forever) and allocates as data arrives.
pub fn read_npy(path: &Path) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let file = path.display().to_string();
    let f = crate::io::open_regular(path).map_err(|e| NpyError {
        file: file.clone(),
        reason: format!("cannot read: {e}"),
    })?;
    read_npy_from(&file, &mut std::io::BufReader::new(f))
}

/// Parses `.npy` bytes (see [`read_npy`]).
pub fn parse_npy(file: &str, bytes: &[u8]) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    read_npy_from(file, &mut &bytes[..])
}

/// Reads `.npy` data from `src` (see [`read_npy`]); `file` names it in errors.
pub fn read_npy_from(
    file: &str,
    src: &mut impl std::io::Read,
) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    use std::io::Read;
    let err = |reason: String| NpyError {
        file: file.to_string(),
        reason,
    };
    let io = |e: std::io::Error| err(format!("cannot read: {}", e.kind()));
    let mut head = [0u8; 10];
    let got = read_up_to(src, &mut head).map_err(io)?;
    if got < 10 || &head[..6] != b"\x93NUMPY" {
        return Err(err("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let hlen = match head[6] {
        1 => u16::from_le_bytes([head[8], head[9]]) as usize,
        2 | 3 => {
            let mut more = [0u8; 2];
            src.read_exact(&mut more)
                .map_err(|_| err("truncated or unreadable header".into()))?;
            u32::from_le_bytes([head[8], head[9], more[0], more[1]]) as usize
        }
        v => return Err(err(format!("unsupported .npy version {v}"))),
    };
    if hlen > MAX_HEADER {
        return Err(err(format!("header of {hlen} bytes is implausibly long")));
    }
    let mut header_bytes = vec![0u8; hlen];
    src.read_exact(&mut header_bytes)
        .map_err(|_| err("truncated or unreadable header".into()))?;
    let header = std::str::from_utf8(&header_bytes)
        .map_err(|_| err("truncated or unreadable header".into()))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header
            .get(at..)?
            .trim_start()
            .strip_prefix(':')?
            .trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| err("header has no 'descr'".into()))?;
    if !descr.starts_with("'<f4'") {
        let d: String = descr.chars().take_while(|c| *c != ',').take(40).collect();
        return Err(err(format!(
            "dtype {d} is not little-endian float32 ('<f4'); save with x.astype(np.float32)"
        )));
    }
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(err("Fortran-ordered arrays are not supported".into()));
    }
    let shape_txt = field("shape").ok_or_else(|| err("header has no 'shape'".into()))?;
    let inner = shape_txt
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| err("unreadable shape".into()))?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| err(format!("unreadable shape ({inner})")))?;
    let too_large = || err(format!("shape {shape:?} is too large"));
    let bytes_needed = shape
        .iter()
        .try_fold(4usize, |acc, &d| acc.checked_mul(d))
        .filter(|&b| u64::try_from(b).is_ok_and(|b| b < u64::MAX))
        .ok_or_else(too_large)?;
    // Read at most one byte more than declared: growing as data comes, never the declared
    // size up front, so a lying header costs only what the file holds.
    let mut data = Vec::new();
    src.take(bytes_needed as u64 + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() != bytes_needed {
        let has = if data.len() > bytes_needed {
            "more".to_string()
        } else {
            data.len().to_string()
        };
        return Err(err(format!(
            "shape {shape:?} needs {bytes_needed} bytes of data, the file has {has}"
        )));
    }
    let values = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((shape, values))
}

/// Reads into `buf` until it is full or the source ends; returns the bytes read.
fn read_up_to(src: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Reads a `.npy` of images of `shape` (pixels in [0, 1] by convention): (N, H, W) for grey
/// images, (N, H, W, C), or (N, H·W·C) flat; channels last, as backwork writes them. Refuses
/// any other shape, no images, and any value that is not finite.
pub fn read_images(path: &Path, want: &Shape) -> Result<(Vec<usize>, Vec<f32>), NpyError> {
    let (shape, x) = read_npy(path)?;
    let bad = |reason: String| NpyError {
        file: path.display().to_string(),
        reason,
    };
    let n = match shape.as_slice() {
        [n, h, w] if want.c == 1 && *h == want.h && *w == want.w => *n,
        [n, h, w, c] if *h == want.h && *w == want.w && *c == want.c => *n,
        [n, d] if *d == want.len() => *n,
        _ => {
            let grey = if want.c == 1 {
                format!("(N, {}, {}), ", want.h, want.w)
            } else {
                String::new()
            };
            return Err(bad(format!(
                "shape {shape:?} is not {grey}(N, {}, {}, {}) or (N, {}): the network takes {want} images",
                want.h,
                want.w,
                want.c,
                want.len()
            )));
        }
    };
    if n == 0 {
        return Err(bad("holds no images".into()));
    }
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return Err(bad(format!(
            "value {} at flat index {i} is not finite",
            x[i]
        )));
    }
    Ok((shape, x))
}

/// The first `rows` images of `path` (a `.npy` as [`read_images`] accepts), for a run that
/// starts from given images (`--init FILE.npy`); a file with fewer rows is refused, naming
/// both counts.
pub fn read_start_images(path: &Path, rows: usize, want: &Shape) -> Result<Vec<f32>, NpyError> {
    Ok(read_start_images_noted(path, rows, want)?.0)
}

/// [`read_start_images`], and a line to tell the user when the file holds more images than
/// the run takes (only the first ones are used: it was silent).
pub fn read_start_images_noted(
    path: &Path,
    rows: usize,
    want: &Shape,
) -> Result<(Vec<f32>, Option<String>), NpyError> {
    let (_, mut x) = read_images(path, want)?;
    let have = x.len() / want.len();
    let note = (have > rows).then(|| {
        format!(
            "{}: holds {have} images; the run starts from the first {rows} (labels × images per label, group-major)",
            path.display()
        )
    });
    if have < rows {
        return Err(NpyError {
            file: path.display().to_string(),
            reason: format!(
                "holds {have} image{}; the run needs {rows} (labels × images per label, group-major)",
                if have == 1 { "" } else { "s" }
            ),
        });
    }
    x.truncate(rows * want.len());
    Ok((x, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let v: Vec<f32> = (0..24).map(|i| i as f32 * 0.5).collect();
        let b = npy_bytes(&v, &[2, 3, 4]);
        assert_eq!((b.len() - v.len() * 4) % 64, 0);
        let (shape, back) = parse_npy("a.npy", &b).unwrap();
        assert_eq!(shape, vec![2, 3, 4]);
        assert_eq!(back, v);
        let (shape, _) = parse_npy("a.npy", &npy_bytes(&v, &[24])).unwrap();
        assert_eq!(shape, vec![24]);
    }

    #[test]
    fn refuses_other_dtypes_and_truncation() {
        let b = npy_bytes(&[1.0, 2.0], &[2]);
        let mut f8 = b.clone();
        let at = f8.windows(3).position(|w| w == b"<f4").unwrap();
        f8[at + 2] = b'8';
        let e = parse_npy("x.npy", &f8).unwrap_err().to_string();
        assert!(e.contains("x.npy") && e.contains("'<f8'"), "{e}");
        let e = parse_npy("x.npy", &b[..b.len() - 1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs 8 bytes"), "{e}");
        assert!(parse_npy("x.npy", b"hello").is_err());
    }

    /// Issue 12: a shape whose product wraps (2^58 × 28 × 28 × 4 bytes) was accepted as an
    /// empty array; the size is now computed with checked arithmetic.
    #[test]
    fn refuses_shapes_whose_size_overflows() {
        let with_shape = |shape: &str| {
            let header =
                format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}\n");
            let mut b = b"\x93NUMPY\x01\x00".to_vec();
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
            b.extend_from_slice(header.as_bytes());
            b
        };
        let e = parse_npy("w.npy", &with_shape("(288230376151711744, 28, 28)"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too large"), "{e}");
        let e = parse_npy("w.npy", &with_shape("(18446744073709551615,)"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too large"), "{e}");
        assert!(parse_npy("w.npy", &with_shape("(0, 28, 28)")).is_ok());
    }

    /// Issue 12: `--inputs /dev/zero` read until memory ran out; data past the declared size
    /// is now refused after reading one byte too many.
    #[test]
    fn reads_no_more_than_the_header_declares() {
        let mut b = npy_bytes(&[1.0, 2.0], &[2]);
        let e = read_npy_from("z", &mut std::io::Read::chain(&b[..], std::io::repeat(0)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("the file has more"), "{e}");
        let e = read_npy(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        b.truncate(5);
        assert!(parse_npy("t.npy", &b).is_err());
    }
}
