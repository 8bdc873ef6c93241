//! Strict HTTP/1.1 framing at the door (RFC 9112), checked on the bytes before hyper sees them.
//!
//! hyper is lenient where a proxy in front of the bank may not be: it accepts
//! `Transfer-Encoding: gzip, chunked`, two `chunked` fields, bare LF line endings, a missing or a
//! repeated `Host`, and it buffers an unfinished head of up to ~400 KB per connection. Two parsers
//! that frame one byte stream differently are a request-smuggling risk; a head that a stranger may
//! grow to hundreds of kilobytes on each of a thousand connections is memory he controls.
//!
//! So every connection's bytes pass a [`FrameChecker`] first. It holds a request head (at most
//! [`HeadLimits::head_bytes`]) until the head is whole and checked, and only then hands it on;
//! bodies pass through as they come, while the checker follows their framing (`Content-Length`,
//! or chunks and trailers) to know where the next head starts. Refused, each with the connection
//! closed after the answer:
//!
//! - 431 `headers_too_large`: a head over 16 KiB, a field line over 8 KiB, over 100 fields;
//! - 414 `uri_too_long`: a request line over 8 KiB;
//! - 400 `invalid_framing`: a line ending other than CRLF, a folded (obs-fold) line, a field line
//!   without a colon or with space before it, a transfer coding other than one `chunked`, both
//!   `Transfer-Encoding` and `Content-Length`, two `Content-Length` or a bad one, no `Host` in
//!   HTTP/1.1 or two `Host`, a malformed chunk.
//!
//! A refused head never reaches hyper: [`CheckedIo`] gives hyper a minimal stand-in request
//! instead and ends the stream after it, and the server answers that request (the n-th of the
//! connection, as [`FramingVerdict`] records) with the refusal. A malformed chunk, found once the
//! request is already being served, ends the stream early: hyper fails the body, and the body's
//! reader answers 400 `invalid_framing`. Either way the connection then closes after a lingering
//! read of what the client still sends.

use bytes::{Buf, BytesMut};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The bounds of a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// A head in all: request line, fields and the empty line.
    pub head_bytes: usize,
    /// One line (the request line, a field line, a chunk-size line, a trailer line).
    pub line_bytes: usize,
    /// Field lines in one head (hyper's own cap, answered here with a JSON 431 instead).
    pub fields: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            head_bytes: 16 * 1024,
            line_bytes: 8 * 1024,
            fields: 100,
        }
    }
}

/// Why a request's framing was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Violation {
    HeadTooLarge = 1,
    RequestLineTooLong,
    FieldLineTooLong,
    TooManyFields,
    BareLineFeed,
    BareCarriageReturn,
    FoldedLine,
    MalformedField,
    TransferCoding,
    RepeatedTransferEncoding,
    LengthWithTransferEncoding,
    BadContentLength,
    RepeatedContentLength,
    MissingHost,
    RepeatedHost,
    BadChunk,
}

impl Violation {
    const ALL: [Violation; 16] = [
        Violation::HeadTooLarge,
        Violation::RequestLineTooLong,
        Violation::FieldLineTooLong,
        Violation::TooManyFields,
        Violation::BareLineFeed,
        Violation::BareCarriageReturn,
        Violation::FoldedLine,
        Violation::MalformedField,
        Violation::TransferCoding,
        Violation::RepeatedTransferEncoding,
        Violation::LengthWithTransferEncoding,
        Violation::BadContentLength,
        Violation::RepeatedContentLength,
        Violation::MissingHost,
        Violation::RepeatedHost,
        Violation::BadChunk,
    ];

    fn from_u8(value: u8) -> Option<Violation> {
        Self::ALL
            .into_iter()
            .find(|violation| *violation as u8 == value)
    }

    /// A closed set of names, for the metrics label and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::HeadTooLarge => "head_too_large",
            Violation::RequestLineTooLong => "request_line_too_long",
            Violation::FieldLineTooLong => "field_line_too_long",
            Violation::TooManyFields => "too_many_fields",
            Violation::BareLineFeed => "bare_lf",
            Violation::BareCarriageReturn => "bare_cr",
            Violation::FoldedLine => "obs_fold",
            Violation::MalformedField => "malformed_field",
            Violation::TransferCoding => "transfer_coding",
            Violation::RepeatedTransferEncoding => "repeated_transfer_encoding",
            Violation::LengthWithTransferEncoding => "length_with_transfer_encoding",
            Violation::BadContentLength => "bad_content_length",
            Violation::RepeatedContentLength => "repeated_content_length",
            Violation::MissingHost => "missing_host",
            Violation::RepeatedHost => "repeated_host",
            Violation::BadChunk => "bad_chunk",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Violation::HeadTooLarge => "the request head is over 16 KiB",
            Violation::RequestLineTooLong => "the request line is over 8 KiB",
            Violation::FieldLineTooLong => "a header line is over 8 KiB",
            Violation::TooManyFields => "the request has over 100 header fields",
            Violation::BareLineFeed => "lines must end with CRLF, not a bare LF",
            Violation::BareCarriageReturn => "a bare CR is not allowed in a request head",
            Violation::FoldedLine => "folded header lines are not allowed",
            Violation::MalformedField => "a header line is malformed",
            Violation::TransferCoding => "the only transfer coding accepted is chunked",
            Violation::RepeatedTransferEncoding => "transfer-encoding may appear only once",
            Violation::LengthWithTransferEncoding => {
                "transfer-encoding and content-length may not both be sent"
            }
            Violation::BadContentLength => "content-length must be a decimal number",
            Violation::RepeatedContentLength => "content-length may appear only once",
            Violation::MissingHost => "an HTTP/1.1 request needs a host header",
            Violation::RepeatedHost => "host may appear only once",
            Violation::BadChunk => "the chunked body is malformed",
        }
    }

    /// Which error answers it: 431, 414 or 400.
    pub fn is_size(self) -> bool {
        matches!(
            self,
            Violation::HeadTooLarge | Violation::FieldLineTooLong | Violation::TooManyFields
        )
    }
}

/// Where the checker is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Gathering a head (held back until it is whole and checked).
    Head,
    /// A `Content-Length` body with this many bytes to go.
    Body(u64),
    /// A chunk-size line.
    ChunkLine(ChunkLine),
    /// Chunk data with this many bytes to go.
    ChunkData(u64),
    /// The CRLF after chunk data: whether the CR was seen.
    ChunkEnd { after_cr: bool },
    /// Trailer lines after the last chunk: the current line's length, the trailers' total, after CR.
    Trailers {
        line: usize,
        total: usize,
        after_cr: bool,
    },
}

/// Where the checker is in a chunk-size line (`1a;name=value` CRLF).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ChunkLine {
    /// Bytes of the line so far.
    length: usize,
    /// The size read so far.
    size: u64,
    /// Hex digits read.
    digits: usize,
    /// Whitespace after the digits (allowed only before an extension or the line's end).
    spaced: bool,
    /// Inside an extension (after `;`), whose bytes are not interpreted.
    extension: bool,
    /// The CR was seen: the LF must follow.
    after_cr: bool,
}

/// What one head says about the framing of its message.
#[derive(Debug, Default)]
struct HeadFacts {
    http10: bool,
    hosts: usize,
    transfer_encodings: usize,
    content_length: Option<u64>,
    fields: usize,
}

/// Follows one connection's request framing (see the module docs). Pure: bytes in, bytes out.
#[derive(Debug)]
pub struct FrameChecker {
    limits: HeadLimits,
    state: State,
    /// The head being gathered.
    head: Vec<u8>,
    /// Where the head's current line starts.
    line_start: usize,
    /// Heads handed on so far on this connection.
    heads: u64,
}

/// A shrunk head buffer keeps at most this much capacity between requests.
const HEAD_KEEP_BYTES: usize = 2 * 1024;

impl FrameChecker {
    pub fn new(limits: HeadLimits) -> Self {
        Self {
            limits,
            state: State::Head,
            head: Vec::new(),
            line_start: 0,
            heads: 0,
        }
    }

    /// Heads handed on so far: the index of the request a violation in the current head concerns.
    pub fn heads(&self) -> u64 {
        self.heads
    }

    /// Whether the checker is inside a request already handed on (its body or trailers).
    pub fn in_body(&self) -> bool {
        self.state != State::Head
    }

    /// Takes bytes read from the connection; appends to `out` those hyper may see now.
    pub fn feed(&mut self, mut input: &[u8], out: &mut BytesMut) -> Result<(), Violation> {
        while !input.is_empty() {
            input = match self.state {
                State::Head => self.feed_head(input, out)?,
                State::Body(remaining) => {
                    let (rest, left) = pass_through(input, remaining, out);
                    self.state = if left == 0 {
                        State::Head
                    } else {
                        State::Body(left)
                    };
                    rest
                }
                State::ChunkData(remaining) => {
                    let (rest, left) = pass_through(input, remaining, out);
                    self.state = if left == 0 {
                        State::ChunkEnd { after_cr: false }
                    } else {
                        State::ChunkData(left)
                    };
                    rest
                }
                _ => {
                    let (byte, rest) = (input[0], &input[1..]);
                    out.extend_from_slice(&[byte]);
                    self.chunk_byte(byte)?;
                    rest
                }
            };
        }
        Ok(())
    }

    /// Gathers head bytes up to the end of the head; checks and hands it on when whole.
    fn feed_head<'a>(
        &mut self,
        input: &'a [u8],
        out: &mut BytesMut,
    ) -> Result<&'a [u8], Violation> {
        for (at, &byte) in input.iter().enumerate() {
            if self.head.len() == self.head.capacity() {
                // Grow exactly up to the limit (plus the byte that passes it), never past it.
                let wanted = (self.head.capacity() * 2).clamp(256, self.limits.head_bytes + 1);
                self.head
                    .reserve_exact(wanted.saturating_sub(self.head.len()).max(1));
            }
            self.head.push(byte);
            if self.head_byte(byte)? {
                let facts = check_head(&self.head, self.limits)?;
                out.extend_from_slice(&self.head);
                self.start_body(&facts);
                self.heads += 1;
                self.clear_head();
                return Ok(&input[at + 1..]);
            }
        }
        Ok(&[])
    }

    /// Checks the byte just added to the head; `true` when it ended the head.
    fn head_byte(&mut self, byte: u8) -> Result<bool, Violation> {
        let length = self.head.len();
        let previous = length.checked_sub(2).map(|at| self.head[at]);
        if previous == Some(b'\r') && byte != b'\n' {
            return Err(Violation::BareCarriageReturn);
        }
        if byte != b'\n' {
            if length > self.limits.head_bytes {
                return Err(Violation::HeadTooLarge);
            }
            if length - self.line_start > self.limits.line_bytes {
                return Err(if self.line_start == 0 {
                    Violation::RequestLineTooLong
                } else {
                    Violation::FieldLineTooLong
                });
            }
            return Ok(false);
        }
        if previous != Some(b'\r') {
            return Err(Violation::BareLineFeed);
        }
        if length == 2 {
            // A CRLF before the request line (RFC 9112 2.2 allows ignoring it).
            self.clear_head();
            return Ok(false);
        }
        self.line_start = length;
        Ok(self.head.ends_with(b"\r\n\r\n"))
    }

    fn clear_head(&mut self) {
        self.head.clear();
        self.head.shrink_to(HEAD_KEEP_BYTES);
        self.line_start = 0;
    }

    fn start_body(&mut self, facts: &HeadFacts) {
        self.state = if facts.transfer_encodings > 0 {
            new_chunk_line()
        } else {
            match facts.content_length {
                Some(length) if length > 0 => State::Body(length),
                _ => State::Head,
            }
        };
    }

    /// Follows one byte of a chunk-size line, a chunk's CRLF or a trailer line.
    fn chunk_byte(&mut self, byte: u8) -> Result<(), Violation> {
        self.state = match self.state {
            State::ChunkLine(line) => chunk_line_byte(line, byte, self.limits)?,
            State::ChunkEnd { after_cr: false } if byte == b'\r' => {
                State::ChunkEnd { after_cr: true }
            }
            State::ChunkEnd { after_cr: true } if byte == b'\n' => new_chunk_line(),
            State::ChunkEnd { .. } => return Err(Violation::BadChunk),
            State::Trailers {
                line,
                total,
                after_cr,
            } => trailer_byte(line, total, after_cr, byte, self.limits)?,
            other => other,
        };
        Ok(())
    }
}

fn new_chunk_line() -> State {
    State::ChunkLine(ChunkLine::default())
}

/// Follows one byte of a chunk-size line: hex digits (leading zeros allowed, the size within a
/// u64), optional whitespace, an optional extension after `;`, CRLF (what hyper accepts).
fn chunk_line_byte(line: ChunkLine, byte: u8, limits: HeadLimits) -> Result<State, Violation> {
    if line.after_cr {
        if byte != b'\n' || line.digits == 0 {
            return Err(Violation::BadChunk);
        }
        return Ok(if line.size == 0 {
            State::Trailers {
                line: 0,
                total: 0,
                after_cr: false,
            }
        } else {
            State::ChunkData(line.size)
        });
    }
    if line.length + 1 > limits.line_bytes {
        return Err(Violation::BadChunk);
    }
    let mut next = ChunkLine {
        length: line.length + 1,
        ..line
    };
    match byte {
        b'\r' => next.after_cr = true,
        b'\n' => return Err(Violation::BareLineFeed),
        _ if line.extension => {}
        b';' if line.digits > 0 => next.extension = true,
        b' ' | b'\t' if line.digits > 0 => next.spaced = true,
        _ if line.spaced => return Err(Violation::BadChunk),
        _ => {
            let digit = (byte as char).to_digit(16).ok_or(Violation::BadChunk)?;
            next.digits += 1;
            next.size = line
                .size
                .checked_mul(16)
                .and_then(|size| size.checked_add(u64::from(digit)))
                .ok_or(Violation::BadChunk)?;
        }
    }
    Ok(State::ChunkLine(next))
}

fn trailer_byte(
    line: usize,
    total: usize,
    after_cr: bool,
    byte: u8,
    limits: HeadLimits,
) -> Result<State, Violation> {
    if total + 1 > limits.head_bytes {
        return Err(Violation::HeadTooLarge);
    }
    if after_cr {
        if byte != b'\n' {
            return Err(Violation::BareCarriageReturn);
        }
        // An empty line ends the trailers, and the message.
        return Ok(if line == 0 {
            State::Head
        } else {
            State::Trailers {
                line: 0,
                total: total + 1,
                after_cr: false,
            }
        });
    }
    match byte {
        b'\r' => Ok(State::Trailers {
            line,
            total: total + 1,
            after_cr: true,
        }),
        b'\n' => Err(Violation::BareLineFeed),
        _ if line + 1 > limits.line_bytes => Err(Violation::FieldLineTooLong),
        _ => Ok(State::Trailers {
            line: line + 1,
            total: total + 1,
            after_cr: false,
        }),
    }
}

/// Hands on up to `remaining` body bytes of `input`; what is left of `input`, and of the body.
fn pass_through<'a>(input: &'a [u8], remaining: u64, out: &mut BytesMut) -> (&'a [u8], u64) {
    let take = usize::try_from(remaining)
        .unwrap_or(usize::MAX)
        .min(input.len());
    let (taken, rest) = input.split_at(take);
    out.extend_from_slice(taken);
    (rest, remaining - taken.len() as u64)
}

/// Checks a whole head (it ends with CRLF CRLF and every line ends with CRLF).
fn check_head(head: &[u8], limits: HeadLimits) -> Result<HeadFacts, Violation> {
    let mut lines = head[..head.len() - 4].split(|&byte| byte == b'\n');
    let request_line = lines.next().unwrap_or_default();
    let mut facts = HeadFacts {
        http10: request_line.ends_with(b"HTTP/1.0\r") || request_line.ends_with(b"HTTP/1.0"),
        ..HeadFacts::default()
    };
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        check_field(line, &mut facts)?;
        if facts.fields > limits.fields {
            return Err(Violation::TooManyFields);
        }
    }
    if facts.transfer_encodings > 1 {
        return Err(Violation::RepeatedTransferEncoding);
    }
    if facts.transfer_encodings == 1 && facts.content_length.is_some() {
        return Err(Violation::LengthWithTransferEncoding);
    }
    if facts.transfer_encodings == 1 && facts.http10 {
        return Err(Violation::TransferCoding);
    }
    match facts.hosts {
        0 if !facts.http10 => Err(Violation::MissingHost),
        0 | 1 => Ok(facts),
        _ => Err(Violation::RepeatedHost),
    }
}

/// Checks one field line and notes what it says about the framing.
fn check_field(line: &[u8], facts: &mut HeadFacts) -> Result<(), Violation> {
    facts.fields += 1;
    if line
        .first()
        .is_some_and(|&byte| byte == b' ' || byte == b'\t')
    {
        return Err(Violation::FoldedLine);
    }
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(Violation::MalformedField)?;
    let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
    if name.is_empty() || name.iter().any(|byte| !is_token_byte(*byte)) {
        return Err(Violation::MalformedField);
    }
    if name.eq_ignore_ascii_case(b"host") {
        facts.hosts += 1;
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        facts.transfer_encodings += 1;
        if !value.eq_ignore_ascii_case(b"chunked") {
            return Err(Violation::TransferCoding);
        }
    } else if name.eq_ignore_ascii_case(b"content-length") {
        if facts.content_length.is_some() {
            return Err(Violation::RepeatedContentLength);
        }
        facts.content_length = Some(parse_length(value)?);
    }
    Ok(())
}

fn parse_length(value: &[u8]) -> Result<u64, Violation> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return Err(Violation::BadContentLength);
    }
    Ok(value
        .iter()
        .fold(0u64, |total, digit| total * 10 + u64::from(digit - b'0')))
}

fn trim(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|byte| *byte != b' ' && *byte != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|byte| *byte != b' ' && *byte != b'\t')
        .map_or(start, |at| at + 1);
    &value[start..end]
}

/// RFC 9110's `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Which request of a connection was refused, and why: shared by [`CheckedIo`] (which finds it)
/// and the connection's service (which answers it).
#[derive(Debug)]
pub struct FramingVerdict {
    /// The index of the refused request on its connection; `u64::MAX` while none is.
    request: AtomicU64,
    violation: AtomicU8,
}

impl Default for FramingVerdict {
    fn default() -> Self {
        Self {
            request: AtomicU64::new(u64::MAX),
            violation: AtomicU8::new(0),
        }
    }
}

impl FramingVerdict {
    fn refuse(&self, request: u64, violation: Violation) {
        self.violation.store(violation as u8, Ordering::SeqCst);
        self.request.store(request, Ordering::SeqCst);
    }

    /// Why the connection's `request`-th request (from 0) was refused, if it was.
    pub fn of(&self, request: u64) -> Option<Violation> {
        if self.request.load(Ordering::SeqCst) != request {
            return None;
        }
        Violation::from_u8(self.violation.load(Ordering::SeqCst))
    }
}

/// What hyper reads in place of a refused head: a request the service answers with the refusal.
const STAND_IN: &[u8] = b"GET / HTTP/1.1\r\nhost: refused\r\nconnection: close\r\n\r\n";

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 8 * 1024;

/// After a refusal, how long and how much the connection is still read (and dropped) before it
/// closes: closing a socket with unread bytes sends a reset, which can destroy the refusal
/// before the client reads it (nginx's lingering close does the same).
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 1024 * 1024;

/// A connection whose incoming bytes pass a [`FrameChecker`] (writes go straight through).
pub struct CheckedIo<S> {
    inner: S,
    checker: FrameChecker,
    /// Checked bytes not yet read by hyper.
    ready: BytesMut,
    /// Set once a head was refused: nothing more is handed to hyper.
    ended: bool,
    /// A body broke its framing: hyper is to read one end of stream (once).
    end_of_stream_due: bool,
    verdict: Arc<FramingVerdict>,
    /// Whether the write side was shut down already.
    shut: bool,
    /// The end of the lingering close, once it started.
    linger_until: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Bytes dropped while lingering.
    lingered: usize,
}

impl<S> CheckedIo<S> {
    pub fn new(inner: S, limits: HeadLimits, verdict: Arc<FramingVerdict>) -> Self {
        Self {
            inner,
            checker: FrameChecker::new(limits),
            ready: BytesMut::new(),
            ended: false,
            end_of_stream_due: false,
            verdict,
            shut: false,
            linger_until: None,
            lingered: 0,
        }
    }

    /// Moves checked bytes into hyper's buffer; `true` if any were.
    fn hand_on(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.ready.is_empty() {
            return false;
        }
        let take = self.ready.len().min(buf.remaining());
        buf.put_slice(&self.ready[..take]);
        self.ready.advance(take);
        if self.ready.is_empty() && self.ready.capacity() > READ_CHUNK * 2 {
            self.ready = BytesMut::new();
        }
        true
    }

    fn refuse(&mut self, violation: Violation) {
        metrics::counter!("onlinebank_http_framing_refused_total", "why" => violation.as_str())
            .increment(1);
        if self.checker.in_body() {
            // The request is being served: hyper is told the stream ended, so its body read
            // fails and the request is answered 400; nothing more is read but the lingering
            // close's.
            self.ended = true;
            self.end_of_stream_due = true;
            return;
        }
        self.verdict.refuse(self.checker.heads(), violation);
        self.ready.extend_from_slice(STAND_IN);
        self.ended = true;
    }
}

impl<S: AsyncRead + Unpin> CheckedIo<S> {
    /// Reads and drops what the client still sends after a refusal, bounded in time and bytes.
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let until = self
            .linger_until
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGER)));
        if until.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        loop {
            let mut chunk = [0u8; READ_CHUNK];
            let mut raw = ReadBuf::new(&mut chunk);
            match Pin::new(&mut self.inner).poll_read(cx, &mut raw) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) if !raw.filled().is_empty() => {
                    self.lingered += raw.filled().len();
                    if self.lingered > LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CheckedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.hand_on(buf) {
                return Poll::Ready(Ok(()));
            }
            if std::mem::take(&mut this.end_of_stream_due) {
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                // Not an end of stream: hyper would drop the stand-in request unanswered (it
                // takes an EOF mid-request for a client gone). It answers, then closes.
                return Poll::Pending;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut raw = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut raw) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if raw.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    if let Err(violation) = this.checker.feed(raw.filled(), &mut this.ready) {
                        this.refuse(violation);
                    }
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for CheckedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.shut {
            std::task::ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
            this.shut = true;
        }
        if this.ended {
            return this.poll_linger(cx);
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; what hyper would see, or the violation.
    fn check_in_steps(input: &[u8], step: usize) -> Result<Vec<u8>, Violation> {
        let mut checker = FrameChecker::new(HeadLimits::default());
        let mut out = BytesMut::new();
        for piece in input.chunks(step.max(1)) {
            checker.feed(piece, &mut out)?;
        }
        Ok(out.to_vec())
    }

    /// A chunked POST with `body` after its head.
    fn chunked(body: &[u8]) -> Vec<u8> {
        let mut request =
            b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        request
    }

    fn check(input: &[u8]) -> Result<Vec<u8>, Violation> {
        let whole = check_in_steps(input, input.len());
        for step in [1, 2, 7] {
            assert_eq!(check_in_steps(input, step), whole, "in steps of {step}");
        }
        whole
    }

    #[test]
    fn well_framed_requests_pass_unchanged_whatever_the_pieces() {
        let requests: [&[u8]; 4] = [
            b"GET /api/v1/ping HTTP/1.1\r\nHost: bank\r\n\r\n",
            b"POST /requests HTTP/1.1\r\nHost: bank\r\nContent-Length: 5\r\n\r\nhello\
              GET / HTTP/1.1\r\nhost: bank\r\n\r\n",
            b"POST /x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n0\r\nx-trailer: 1\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
        ];
        for request in requests {
            assert_eq!(check(request).as_deref(), Ok(request), "{request:?}");
        }
    }

    #[test]
    fn a_head_is_held_back_until_it_is_whole() {
        let mut checker = FrameChecker::new(HeadLimits::default());
        let mut out = BytesMut::new();
        assert_eq!(
            checker.feed(b"GET / HTTP/1.1\r\nHost: b\r\n", &mut out),
            Ok(())
        );
        assert!(out.is_empty());
        assert_eq!(checker.feed(b"\r\n", &mut out), Ok(()));
        assert_eq!(checker.heads(), 1);
        assert!(out.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let refused: [(&[u8], Violation); 12] = [
            (b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Violation::TransferCoding),
            (b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Violation::RepeatedTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", Violation::LengthWithTransferEncoding),
            (b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", Violation::RepeatedContentLength),
            (b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: +3\r\n\r\n", Violation::BadContentLength),
            (b"GET / HTTP/1.1\nHost: b\r\n\r\n", Violation::BareLineFeed),
            (b"GET / HTTP/1.1\r\nHost: b\n\n", Violation::BareLineFeed),
            (b"GET / HTTP/1.1\r\nHost: b\rX: y\r\n\r\n", Violation::BareCarriageReturn),
            (b"GET / HTTP/1.1\r\n\r\n", Violation::MissingHost),
            (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Violation::RepeatedHost),
            (b"GET / HTTP/1.1\r\nHost: b\r\nX: a\r\n  folded\r\n\r\n", Violation::FoldedLine),
            (b"GET / HTTP/1.1\r\nHost : b\r\n\r\n", Violation::MalformedField),
        ];
        for (request, violation) in refused {
            assert_eq!(
                check(request),
                Err(violation),
                "{:?}",
                String::from_utf8_lossy(request)
            );
        }
    }

    #[test]
    fn chunk_sizes_take_leading_zeros_and_whitespace_before_an_extension() {
        for body in [
            &b"5 ;name=v\r\nhello\r\n0\r\n\r\n"[..],
            b"5\t\r\nhello\r\n0\r\n\r\n",
            b"0000000000000000000005\r\nhello\r\n0\r\n\r\n",
        ] {
            let request = chunked(body);
            assert_eq!(
                check(&request),
                Ok(request.clone()),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        for body in [&b"5 5\r\n"[..], b"10000000000000000\r\n", b" 5\r\n"] {
            let request = chunked(body);
            assert!(
                check(&request).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for body in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"zz\r\n",
            b"5\r\nhelloXX",
            b"\r\n",
            b"0\r\nx\n",
        ] {
            let request = chunked(body);
            assert!(
                check(&request).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn heads_and_lines_are_bounded() {
        let long_line = format!(
            "GET / HTTP/1.1\r\nHost: b\r\nX: {}\r\n\r\n",
            "a".repeat(9000)
        );
        assert_eq!(
            check(long_line.as_bytes()),
            Err(Violation::FieldLineTooLong)
        );
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: b\r\n\r\n", "a".repeat(9000));
        assert_eq!(
            check(long_target.as_bytes()),
            Err(Violation::RequestLineTooLong)
        );
        let many: String = (0..3)
            .map(|n| format!("X-{n}: {}\r\n", "a".repeat(7000)))
            .collect();
        let big = format!("GET / HTTP/1.1\r\nHost: b\r\n{many}\r\n");
        assert_eq!(check(big.as_bytes()), Err(Violation::HeadTooLarge));
        let fields: String = (0..101).map(|n| format!("X-{n}: 1\r\n")).collect();
        let crowded = format!("GET / HTTP/1.1\r\nHost: b\r\n{fields}\r\n");
        assert_eq!(check(crowded.as_bytes()), Err(Violation::TooManyFields));
        // An unfinished head is refused as soon as it passes the limit, not held.
        let mut checker = FrameChecker::new(HeadLimits::default());
        let mut out = BytesMut::new();
        let endless = format!("GET / HTTP/1.1\r\n{}", "X: 1\r\n".repeat(5000));
        assert!(checker.feed(endless.as_bytes(), &mut out).is_err());
        assert!(checker.head.len() <= 16 * 1024 + 1);
    }

    #[test]
    fn a_verdict_names_the_refused_request() {
        let verdict = FramingVerdict::default();
        assert_eq!(verdict.of(0), None);
        verdict.refuse(2, Violation::MissingHost);
        assert_eq!(verdict.of(1), None);
        assert_eq!(verdict.of(2), Some(Violation::MissingHost));
        for violation in Violation::ALL {
            assert_eq!(Violation::from_u8(violation as u8), Some(violation));
        }
    }
}
