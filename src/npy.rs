//! Minimal `.npy` (format 1.0, little-endian float32, C order) reading and writing: the
//! interchange format of logits with numpy / PyTorch.

use crate::Error;

/// Serialises `data` of `shape` as a float32 `.npy` file.
pub fn to_bytes(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_txt = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_txt}, }}");
    // Pad so that magic (6) + version (2) + length (2) + header ends on a 64-byte boundary.
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

/// Parses a little-endian float32 C-order `.npy`, returning (data, shape).
pub fn from_bytes(bytes: &[u8]) -> Result<(Vec<f32>, Vec<usize>), Error> {
    let bad = |m: &str| Error::Input(format!("not a float32 .npy file: {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("no magic"));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Err(bad("unknown version")),
    };
    let header = bytes
        .get(start..start + len)
        .ok_or_else(|| bad("short header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad("only little-endian float32 in C order is supported"));
    }
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("no shape"))?;
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_, _>>()?;
    let body = &bytes[start + len..];
    let count: usize = shape.iter().product();
    if body.len() != count * 4 {
        return Err(bad("data length does not match shape"));
    }
    let data = body
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Ok((data, shape))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let data = [1.5f32, -2.0, 3.25, 0.0, 7.0, 8.0];
        let bytes = super::to_bytes(&data, &[2, 3]);
        assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
        let (back, shape) = super::from_bytes(&bytes).unwrap();
        assert_eq!(
            (back.as_slice(), shape.as_slice()),
            (&data[..], &[2usize, 3][..])
        );
        assert!(super::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    }
}
