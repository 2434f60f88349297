//! The IDX file format of MNIST and Fashion-MNIST: parsing and validation, raw or gzipped.

use std::io::Read;

use flate2::read::GzDecoder;

use super::DataError;

/// Side of an MNIST image in pixels.
pub const SIDE: usize = 28;
/// Pixels in one image.
pub const PIXELS: usize = SIDE * SIDE;
/// Number of classes a label may name (0..=9).
pub const NUM_LABELS: usize = 10;

/// IDX magic number of an image file: u8 data, three dimensions.
const IMAGES_MAGIC: u32 = 0x0000_0803;
/// IDX magic number of a label file: u8 data, one dimension.
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Decompresses `bytes` if they start with the gzip magic, otherwise returns them as they are.
pub fn maybe_gunzip(name: &str, bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let bad = |e: std::io::Error| DataError::corrupt(name, format!("bad gzip stream: {e}"));
    let mut dec = GzDecoder::new(bytes.as_slice());
    // The IDX header first: it says how many bytes the whole file has, and no more than one
    // byte past that is inflated (a small .gz must not inflate to gigabytes before the check).
    let mut out = Vec::new();
    (&mut dec).take(8).read_to_end(&mut out).map_err(bad)?;
    if out.len() == 8 && read_u32(&out, 0) == IMAGES_MAGIC {
        (&mut dec).take(8).read_to_end(&mut out).map_err(bad)?;
    }
    let expected = idx_len(&out).unwrap_or(out.len() as u64);
    let rest = (expected + 1).saturating_sub(out.len() as u64);
    out.reserve(expected.min(64 * bytes.len() as u64) as usize);
    dec.take(rest).read_to_end(&mut out).map_err(bad)?;
    Ok(out)
}

/// The length an IDX file declares in its header (`head` holds its first bytes), if the
/// header is one of ours and the length fits in a u64.
fn idx_len(head: &[u8]) -> Option<u64> {
    let word = |i: usize| head.get(i..i + 4).map(|b| u64::from(read_u32(b, 0)));
    match u32::try_from(word(0)?).ok()? {
        IMAGES_MAGIC => word(4)?
            .checked_mul(word(8)?)?
            .checked_mul(word(12)?)?
            .checked_add(16),
        LABELS_MAGIC => word(4)?.checked_add(8),
        _ => None,
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// At most this many pixels a side in a dataset's image.
pub const MAX_SIDE: usize = 4096;

/// Parses an IDX image file (magic 2051, dims (N, rows, cols), u8) into its rows, columns and
/// N×rows×cols row-major pixels.
pub fn parse_images(name: &str, bytes: &[u8]) -> Result<(usize, usize, Vec<u8>), DataError> {
    if bytes.len() < 16 {
        return Err(DataError::corrupt(
            name,
            format!(
                "truncated header: {} bytes, an IDX image file needs 16",
                bytes.len()
            ),
        ));
    }
    let magic = read_u32(bytes, 0);
    if magic != IMAGES_MAGIC {
        return Err(DataError::corrupt(
            name,
            format!("magic number {magic} is not 2051 (IDX u8 images, 3 dimensions)"),
        ));
    }
    let n = read_u32(bytes, 4) as usize;
    let (rows, cols) = (read_u32(bytes, 8) as usize, read_u32(bytes, 12) as usize);
    if rows == 0 || cols == 0 || rows > MAX_SIDE || cols > MAX_SIDE {
        return Err(DataError::corrupt(
            name,
            format!("images are {rows}×{cols}: a side must be 1 to {MAX_SIDE} pixels"),
        ));
    }
    check_len(name, bytes.len(), 16, n, rows * cols)?;
    Ok((rows, cols, bytes[16..].to_vec()))
}

/// Parses an IDX label file (magic 2049, dims (N), u8).
pub fn parse_labels(name: &str, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    if bytes.len() < 8 {
        return Err(DataError::corrupt(
            name,
            format!(
                "truncated header: {} bytes, an IDX label file needs 8",
                bytes.len()
            ),
        ));
    }
    let magic = read_u32(bytes, 0);
    if magic != LABELS_MAGIC {
        return Err(DataError::corrupt(
            name,
            format!("magic number {magic} is not 2049 (IDX u8 labels, 1 dimension)"),
        ));
    }
    let n = read_u32(bytes, 4) as usize;
    check_len(name, bytes.len(), 8, n, 1)?;
    Ok(bytes[8..].to_vec())
}

fn check_len(
    name: &str,
    len: usize,
    header: usize,
    n: usize,
    item: usize,
) -> Result<(), DataError> {
    let expected = n
        .checked_mul(item)
        .and_then(|b| b.checked_add(header))
        .ok_or_else(|| DataError::corrupt(name, format!("item count {n} is implausibly large")))?;
    if len < expected {
        return Err(DataError::corrupt(
            name,
            format!(
                "truncated: the header announces {n} items ({expected} bytes) but the file has {len} bytes"
            ),
        ));
    }
    if len > expected {
        return Err(DataError::corrupt(
            name,
            format!(
                "{} unexpected trailing bytes after {n} items",
                len - expected
            ),
        ));
    }
    Ok(())
}

/// Serialises 28×28 images as an IDX u8 file (used by tests and to write datasets back out).
pub fn encode_images(n: usize, pixels: &[u8]) -> Vec<u8> {
    encode_images_sized(n, SIDE, SIDE, pixels)
}

/// Serialises `n` images of `rows`×`cols` as an IDX u8 file.
pub fn encode_images_sized(n: usize, rows: usize, cols: usize, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + pixels.len());
    for v in [IMAGES_MAGIC, n as u32, rows as u32, cols as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// Serialises labels as an IDX u8 file.
pub fn encode_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + labels.len());
    for v in [LABELS_MAGIC, labels.len() as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(labels);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_images(n: usize) -> Vec<u8> {
        let pixels: Vec<u8> = (0..n * PIXELS).map(|i| (i % 251) as u8).collect();
        encode_images(n, &pixels)
    }

    #[test]
    fn reads_good_images_and_labels() {
        let (rows, cols, px) = parse_images("img", &good_images(3)).unwrap();
        assert_eq!((rows, cols), (28, 28));
        assert_eq!(px.len(), 3 * PIXELS);
        assert_eq!(px[PIXELS + 1], ((PIXELS + 1) % 251) as u8);
        assert_eq!(
            parse_labels("lab", &encode_labels(&[0, 9, 4])).unwrap(),
            vec![0, 9, 4]
        );
    }

    #[test]
    fn refuses_bad_magic_dims_length_and_labels() {
        let mut bad_magic = good_images(1);
        bad_magic[3] = 0x01;
        let e = parse_images("x.idx", &bad_magic).unwrap_err().to_string();
        assert!(
            e.contains("x.idx") && e.contains("magic number 2049"),
            "{e}"
        );

        let mut wrong_dims = good_images(1);
        wrong_dims[9] = 1;
        let e = parse_images("x", &wrong_dims).unwrap_err().to_string();
        assert!(e.contains("65564×28"), "{e}");

        let truncated = &good_images(2)[..16 + PIXELS + 5];
        let e = parse_images("t", truncated).unwrap_err().to_string();
        assert!(e.contains("truncated"), "{e}");

        let mut trailing = good_images(1);
        trailing.push(0);
        let e = parse_images("t", &trailing).unwrap_err().to_string();
        assert!(e.contains("1 unexpected trailing"), "{e}");

        let e = parse_images("h", &[0, 0, 8]).unwrap_err().to_string();
        assert!(e.contains("truncated header"), "{e}");

        let mut huge = encode_labels(&[1]);
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(parse_labels("l", &huge).is_err());
    }

    #[test]
    fn gunzips_only_gzip() {
        use std::io::Write;
        let raw = encode_labels(&[3, 1]);
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&raw).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(maybe_gunzip("a", gz.clone()).unwrap(), raw);
        assert_eq!(maybe_gunzip("a", raw.clone()).unwrap(), raw);
        let e = maybe_gunzip("a.gz", gz[..gz.len() / 2].to_vec()).unwrap_err();
        assert!(e.to_string().contains("a.gz: bad gzip"), "{e}");
    }

    /// Issue 12: a 3 MB .gz inflating to 3 GB was read whole before its header was checked.
    /// A label file declaring 2 labels followed by 100 MB of zeros inflates no further than
    /// the declared 10 bytes plus one, and is then refused as having trailing bytes.
    #[test]
    fn inflates_no_more_than_the_header_declares() {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&encode_labels(&[3, 1])).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..100 {
            enc.write_all(&zeros).unwrap();
        }
        let gz = enc.finish().unwrap();
        assert!(gz.len() < 200_000, "{} bytes", gz.len());
        let out = maybe_gunzip("bomb.gz", gz).unwrap();
        assert_eq!(out.len(), 11);
        let e = parse_labels("bomb.gz", &out).unwrap_err().to_string();
        assert!(e.contains("trailing"), "{e}");
    }
}
