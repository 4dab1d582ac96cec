//! `stdio_upper`'s peer for `bench/pipes.sh`: upper-cases standard input, line by line, onto
//! standard output, as a tokio user writes it: a `current_thread` runtime, tokio's stdin and
//! stdout (which do their blocking reads and writes on tokio's blocking threads), a
//! `BufReader` and a `BufWriter`.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let mut output = BufWriter::with_capacity(64 * 1024, tokio::io::stdout());
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        line.make_ascii_uppercase();
        output.write_all(&line).await?;
    }
    output.flush().await
}
