//! MLLP framing: `0x0B <message> 0x1C 0x0D`.

/// Start block byte.
pub const START: u8 = 0x0B;
/// End block byte.
pub const END: u8 = 0x1C;
/// Carriage return after the end block.
pub const TRAILER: u8 = 0x0D;

/// Wraps `payload` in MLLP framing.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 3);
    out.push(START);
    out.extend_from_slice(payload);
    out.extend_from_slice(&[END, TRAILER]);
    out
}

/// The payload of a framed message, or the input unchanged when it is not framed.
pub fn unframe(bytes: &[u8]) -> &[u8] {
    let Some(body) = bytes.strip_prefix(&[START]) else {
        return bytes;
    };
    let body = body.strip_suffix(&[TRAILER]).unwrap_or(body);
    body.strip_suffix(&[END]).unwrap_or(body)
}

/// Finds the first complete frame in a stream buffer: returns its payload and how many bytes
/// of `buffer` it used (bytes before the start block are skipped). `None` when no complete
/// frame has arrived yet.
pub fn next_frame(buffer: &[u8]) -> Option<(&[u8], usize)> {
    let start = buffer.iter().position(|&b| b == START)?;
    let body = &buffer[start + 1..];
    let end = body.windows(2).position(|w| w == [END, TRAILER])?;
    Some((&body[..end], start + 1 + end + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_and_unframe() {
        let framed = frame(b"MSH|^~\\&\r");
        assert_eq!(framed, b"\x0bMSH|^~\\&\r\x1c\r");
        assert_eq!(unframe(&framed), b"MSH|^~\\&\r");
        assert_eq!(unframe(b"MSH|^~\\&\r"), b"MSH|^~\\&\r");
        assert_eq!(unframe(b"\x0bMSH\x1c"), b"MSH");
    }

    #[test]
    fn stream_frames() {
        let mut stream = b"noise".to_vec();
        stream.extend(frame(b"ONE\r"));
        stream.extend(frame(b"TWO\r"));
        stream.extend(b"\x0bPART");
        let (first, used) = next_frame(&stream).unwrap();
        assert_eq!(first, b"ONE\r");
        let rest = &stream[used..];
        let (second, used) = next_frame(rest).unwrap();
        assert_eq!(second, b"TWO\r");
        assert_eq!(next_frame(&rest[used..]), None);
        assert_eq!(next_frame(b""), None);
    }
}
