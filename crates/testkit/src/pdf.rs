//! Small, valid PDF files written by hand, for tests of PDF reading: one page
//! per string, each line of a string a line of Helvetica text.

use std::io::Write;

/// A PDF with one page per entry of `pages`.
pub fn document(pages: &[&str]) -> Vec<u8> {
    let contents: Vec<Stream> = pages
        .iter()
        .map(|text| Stream::plain(page_content(text)))
        .collect();
    write(contents)
}

/// A one-page PDF whose content stream is `inflated_bytes` of spaces,
/// deflated: a few kilobytes on disk that need that much memory to read.
pub fn deflate_bomb(inflated_bytes: usize) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let block = vec![b' '; 1 << 20];
    let mut left = inflated_bytes;
    while left > 0 {
        let n = left.min(block.len());
        encoder.write_all(&block[..n]).unwrap();
        left -= n;
    }
    write(vec![Stream {
        bytes: encoder.finish().unwrap(),
        filter: Some("FlateDecode"),
    }])
}

struct Stream {
    bytes: Vec<u8>,
    filter: Option<&'static str>,
}

impl Stream {
    fn plain(bytes: Vec<u8>) -> Self {
        Self {
            bytes,
            filter: None,
        }
    }
}

fn page_content(text: &str) -> Vec<u8> {
    let mut content = String::from("BT /F1 12 Tf 14 TL 72 740 Td\n");
    for line in text.lines() {
        let escaped = line
            .replace('\\', "\\\\")
            .replace('(', "\\(")
            .replace(')', "\\)");
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET\n");
    content.into_bytes()
}

/// Objects: 1 catalog, 2 page tree, 3 font, then a page and its content
/// stream for each page.
fn write(contents: Vec<Stream>) -> Vec<u8> {
    let pages = contents.len();
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 4 + 2 * i)).collect();
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /Kids [{}] /Count {pages} >>",
            kids.join(" ")
        )
        .into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    for (i, stream) in contents.into_iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] \
                 /Resources << /Font << /F1 3 0 R >> >> /Contents {} 0 R >>",
                5 + 2 * i
            )
            .into_bytes(),
        );
        let filter = stream
            .filter
            .map(|f| format!(" /Filter /{f}"))
            .unwrap_or_default();
        let mut object =
            format!("<< /Length {}{filter} >>\nstream\n", stream.bytes.len()).into_bytes();
        object.extend_from_slice(&stream.bytes);
        object.extend_from_slice(b"\nendstream");
        objects.push(object);
    }

    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}
