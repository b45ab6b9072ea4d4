//! PDF text, read in a child process. PDF parsers can panic on odd fonts,
//! loop for minutes or inflate a small stream into gigabytes, so the worker
//! never parses a PDF itself: it starts `steward pdf-text` ([`child_main`])
//! with the file on stdin, under an address-space and CPU-time limit it sets
//! on itself, and kills it when its time is up ([`PdfReader::read`]).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward_config::KnowledgeConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::extract::{Collector, Extracted, Limits, Piece, paragraphs};

/// What the child answers on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Pages(Vec<String>),
    Refused(String),
}

/// Limits for one PDF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdfLimits {
    pub max_pages: usize,
    pub memory_mb: u64,
    pub timeout: Duration,
    /// Extracted text, at most.
    pub max_text_bytes: usize,
}

impl PdfLimits {
    pub fn from_config(config: &KnowledgeConfig) -> Self {
        Self {
            max_pages: config.pdf_max_pages,
            memory_mb: config.pdf_memory_mb,
            timeout: Duration::from_secs(config.pdf_timeout_secs),
            max_text_bytes: config.max_text_bytes,
        }
    }
}

/// Starts the PDF-reading child: a program and the arguments that make it
/// read a PDF (for Steward itself, its own executable and `pdf-text`).
#[derive(Clone, Debug)]
pub struct PdfReader {
    program: PathBuf,
    args: Vec<OsString>,
    limits: PdfLimits,
}

impl PdfReader {
    pub fn new(
        program: impl Into<PathBuf>,
        args: impl IntoIterator<Item = impl Into<OsString>>,
        limits: PdfLimits,
    ) -> Self {
        Self {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
            limits,
        }
    }

    /// This very executable, which must answer `pdf-text` (the `steward` binary).
    pub fn this_executable(limits: PdfLimits) -> std::io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?, ["pdf-text"], limits))
    }

    /// The text of each page, or why the PDF cannot be read. `Err(Retry)`
    /// when the child could not be started at all (a fault of this machine,
    /// not of the file).
    pub async fn read(&self, bytes: &[u8]) -> Result<Vec<String>, ReadError> {
        let limits = &self.limits;
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .arg(limits.max_pages.to_string())
            .arg(limits.memory_mb.to_string())
            .arg(limits.timeout.as_secs().max(1).to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ReadError::Retry(format!("the PDF reader could not start: {e}")))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        // JSON escaping can double text; more than that is not an answer.
        let max_answer = (limits.max_text_bytes as u64).saturating_mul(2) + 64 * 1024;
        let exchange = async {
            // The child may stop reading early (a refusal); that is not an error here.
            let write = async {
                let _ = stdin.write_all(bytes).await;
                drop(stdin);
            };
            let mut answer = Vec::new();
            let mut limited = (&mut stdout).take(max_answer + 1);
            let read = limited.read_to_end(&mut answer);
            let (_, read) = tokio::join!(write, read);
            read.map(|_| answer)
        };
        let answer = match tokio::time::timeout(limits.timeout, exchange).await {
            Err(_) => {
                let _ = child.kill().await;
                return Err(ReadError::Unreadable(format!(
                    "reading the PDF took longer than {:?}",
                    limits.timeout
                )));
            }
            Ok(Err(e)) => return Err(ReadError::Retry(format!("the PDF reader failed: {e}"))),
            Ok(Ok(answer)) if answer.len() as u64 > max_answer => {
                let _ = child.kill().await;
                return Err(ReadError::Unreadable(format!(
                    "the document holds more than {} of text",
                    crate::extract::size(limits.max_text_bytes)
                )));
            }
            Ok(Ok(answer)) => answer,
        };
        let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
            Ok(Ok(status)) => status,
            _ => {
                let _ = child.kill().await;
                return Err(ReadError::Unreadable(
                    "the PDF reader did not finish".into(),
                ));
            }
        };
        if status.success() {
            return match serde_json::from_slice(&answer) {
                Ok(Answer::Pages(pages)) => Ok(pages),
                Ok(Answer::Refused(reason)) => Err(ReadError::Unreadable(reason)),
                Err(_) => Err(ReadError::Unreadable(
                    "the PDF reader gave no readable answer".into(),
                )),
            };
        }
        Err(ReadError::Unreadable(match status.signal() {
            // Out of address space, Rust aborts; out of CPU time, the kernel
            // sends SIGXCPU.
            Some(libc::SIGABRT) => format!(
                "the PDF needs more than {} MB of memory to read",
                limits.memory_mb
            ),
            Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
                format!("reading the PDF took longer than {:?}", limits.timeout)
            }
            _ => "the PDF could not be read (its parser failed)".into(),
        }))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The file cannot be read: the reason, for the person who gave it.
    Unreadable(String),
    /// The reader itself failed; another attempt may succeed.
    Retry(String),
}

/// A PDF's pages as pieces: a "Page N" heading over each page's paragraphs,
/// so that a passage's source names its page.
pub fn pieces(pages: &[String], limits: Limits) -> Result<Extracted, String> {
    let mut out = Collector::new(limits);
    for (n, page) in pages.iter().enumerate() {
        if page.trim().is_empty() {
            continue;
        }
        out.push(Piece::Heading(1, format!("Page {}", n + 1)))?;
        paragraphs(page, &mut out)?;
    }
    let pieces = out.into_pieces();
    if !pieces.iter().any(|p| matches!(p, Piece::Block(_))) {
        return Err("the PDF holds no text (a scan needs text recognition first)".into());
    }
    Ok(Extracted {
        title: None,
        pieces,
    })
}

/// Reads a PDF's pages in this process. Only [`child_main`] calls it outside
/// tests: it may panic, loop or allocate without bound on hostile files.
pub fn read_pages(bytes: &[u8], max_pages: usize) -> Result<Vec<String>, String> {
    let mut document = pdf_extract::Document::load_mem(bytes)
        .map_err(|e| format!("the PDF is damaged or not a PDF ({e})"))?;
    // Many PDFs are encrypted with an empty password, only to forbid editing.
    if document.is_encrypted() && document.decrypt("").is_err() {
        return Err("the PDF is protected by a password".into());
    }
    let pages = document.get_pages().len();
    if pages > max_pages {
        return Err(format!(
            "the PDF has {pages} pages; at most {max_pages} are read"
        ));
    }
    // A page that cannot be read is left out rather than failing the rest.
    let texts = (1..=pages as u32)
        .map(|n| {
            let mut text = String::new();
            let mut output = pdf_extract::PlainTextOutput::new(&mut text);
            match pdf_extract::output_doc_page(&document, &mut output, n) {
                Ok(()) => text,
                Err(_) => String::new(),
            }
        })
        .collect();
    Ok(texts)
}

/// `steward pdf-text MAX_PAGES MEMORY_MB CPU_SECS`: reads a PDF from stdin
/// and writes its pages (or why it cannot) as JSON to stdout.
pub fn child_main(args: &[String]) -> ExitCode {
    let numbers: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let [max_pages, memory_mb, cpu_secs] = numbers[..] else {
        eprintln!("usage: steward pdf-text MAX_PAGES MEMORY_MB CPU_SECS (PDF on stdin)");
        return ExitCode::from(2);
    };
    // The answer goes to a copy of stdout; whatever the parser prints goes
    // to stderr and cannot corrupt it.
    let answer_fd = match redirect_stdout_to_stderr() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("pdf-text: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = limit_self(memory_mb, cpu_secs) {
        eprintln!("pdf-text: cannot set limits: {e}");
        return ExitCode::from(2);
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut bytes) {
        eprintln!("pdf-text: {e}");
        return ExitCode::from(2);
    }
    let answer = match read_pages(&bytes, max_pages as usize) {
        Ok(pages) => Answer::Pages(pages),
        Err(reason) => Answer::Refused(reason),
    };
    let mut out = std::fs::File::from(answer_fd);
    match serde_json::to_writer(&mut out, &answer).map(|_| out.flush()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}

fn redirect_stdout_to_stderr() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let answer = std::io::stdout().as_fd().try_clone_to_owned()?;
    // SAFETY: dup2 on two descriptors this process owns for its whole life.
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(answer)
}

fn limit_self(memory_mb: u64, cpu_secs: u64) -> std::io::Result<()> {
    let set = |resource, value: u64| {
        let limit = libc::rlimit {
            rlim_cur: value,
            rlim_max: value,
        };
        // SAFETY: setrlimit reads the struct it is given and nothing else.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    };
    // On top of what is mapped already (the executable itself, larger in a
    // debug build): the budget is the parser's, whatever the binary's size.
    let budget = memory_mb.saturating_mul(1024 * 1024);
    set(libc::RLIMIT_AS, mapped_bytes()?.saturating_add(budget))?;
    set(libc::RLIMIT_CPU, cpu_secs)
}

/// This process's address space now (the first field of /proc/self/statm, in pages).
fn mapped_bytes() -> std::io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("unreadable /proc/self/statm: {statm}")))?;
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages.saturating_mul(u64::try_from(page_size).unwrap_or(4096)))
}

#[cfg(test)]
mod tests {
    use steward_testkit::pdf;

    use super::*;

    fn limits() -> PdfLimits {
        PdfLimits {
            max_pages: 100,
            memory_mb: 256,
            timeout: Duration::from_secs(2),
            max_text_bytes: 1024 * 1024,
        }
    }

    fn text_limits(max_bytes: usize) -> Limits {
        Limits {
            max_bytes,
            cpu: Duration::from_secs(60),
        }
    }

    /// A "PDF reader" that is a shell script (the real one, `steward
    /// pdf-text`, is tested from the steward crate).
    fn shell(script: &str, limits: PdfLimits) -> PdfReader {
        PdfReader::new("sh", ["-c", script], limits)
    }

    #[test]
    fn pages_are_read_in_order_and_become_headed_paragraphs() {
        let file = pdf::document(&[
            "Refunds\nRefunds take five days.",
            "",
            "Opening hours (weekdays)\nNine to five.",
        ]);
        let pages = read_pages(&file, 10).unwrap();
        assert_eq!(pages.len(), 3);
        assert!(pages[0].contains("Refunds take five days."), "{pages:?}");
        assert!(pages[2].contains("Opening hours (weekdays)"), "{pages:?}");

        let extracted = pieces(&pages, text_limits(1024)).unwrap();
        assert_eq!(extracted.pieces[0], Piece::Heading(1, "Page 1".into()));
        let headings: Vec<_> = extracted
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Heading(_, h) => Some(h.as_str()),
                Piece::Block(_) => None,
            })
            .collect();
        assert_eq!(
            headings,
            ["Page 1", "Page 3"],
            "an empty page gives nothing"
        );
        assert!(
            pieces(&pages, text_limits(10))
                .unwrap_err()
                .contains("more than")
        );
        assert!(
            pieces(&["".into(), " \n".into()], text_limits(1024))
                .unwrap_err()
                .contains("no text")
        );
    }

    #[test]
    fn damaged_oversized_and_fake_pdfs_are_refused_with_a_reason() {
        let file = pdf::document(&["Some text on a page."]);
        for cut in [file.len() / 2, 20, 9] {
            let reason = read_pages(&file[..cut], 10).unwrap_err();
            assert!(reason.contains("damaged"), "cut at {cut}: {reason}");
        }
        let pages: Vec<String> = (0..5000).map(|i| format!("page {i}")).collect();
        let refs: Vec<&str> = pages.iter().map(String::as_str).collect();
        let reason = read_pages(&pdf::document(&refs), 2000).unwrap_err();
        assert!(reason.contains("5000 pages"), "{reason}");
        assert!(read_pages(b"%PDF-1.7\n\0\xff\xfe garbage", 10).is_err());
    }

    #[tokio::test]
    async fn a_reader_that_hangs_is_killed_when_its_time_is_up() {
        let mut limits = limits();
        limits.timeout = Duration::from_millis(300);
        let started = std::time::Instant::now();
        let result = shell("sleep 30", limits).read(b"%PDF-1.4").await;
        assert_eq!(
            result,
            Err(ReadError::Unreadable(
                "reading the PDF took longer than 300ms".into()
            ))
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_reader_that_crashes_floods_or_babbles_fails_the_document() {
        let cases = [
            ("kill -ABRT $$", "more than 256 MB of memory"),
            ("kill -XCPU $$", "took longer than 2s"),
            ("cat >/dev/null; exit 101", "its parser failed"),
            ("echo 'not json'", "no readable answer"),
            ("yes", "more than 1 MB of text"),
            (
                r#"echo '{"refused":"the PDF is protected by a password"}'"#,
                "password",
            ),
        ];
        for (script, expected) in cases {
            match shell(script, limits()).read(b"%PDF-1.4").await {
                Err(ReadError::Unreadable(why)) => {
                    assert!(why.contains(expected), "{script}: {why}")
                }
                other => panic!("{script}: {other:?}"),
            }
        }
        let pages = shell(r#"echo '{"pages":["one","two"]}'"#, limits())
            .read(b"%PDF-1.4")
            .await
            .unwrap();
        assert_eq!(pages, ["one", "two"]);
    }

    #[tokio::test]
    async fn a_reader_that_cannot_start_is_retried_not_blamed_on_the_file() {
        let reader = PdfReader::new("/nonexistent/steward", ["pdf-text"], limits());
        assert!(matches!(
            reader.read(b"%PDF-1.4").await,
            Err(ReadError::Retry(_))
        ));
    }
}
