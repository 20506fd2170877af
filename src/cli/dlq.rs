//! `postback-relay dlq stats` and `dlq list`: the dead-letter queue, read without consuming it.

use std::io::Write as _;
use std::process::ExitCode;

use postback_relay::dlq::{self, DeadLetter, Filter, Stats};

use super::{RenderFormat, Target, summary_line};

/// Prints the counts of the whole queue by destination and reason, and its oldest and newest
/// dead letter.
pub async fn stats(target: Target, format: RenderFormat) -> anyhow::Result<ExitCode> {
    let t = match target.resolve() {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let conn = super::connect(&t.url, "dlq").await?;
    let st = dlq::stats(&conn, &t.topology, t.max_event_bytes).await;
    let _ = conn.close(200, "done".into()).await;
    print_stats(&t.topology.dead, &st?, format)?;
    Ok(ExitCode::SUCCESS)
}

fn print_stats(queue: &str, st: &Stats, format: RenderFormat) -> anyhow::Result<()> {
    if let RenderFormat::Json = format {
        println!("{}", serde_json::to_string_pretty(st)?);
        return Ok(());
    }
    println!("{queue}: {} dead letter(s)", st.total);
    if let (Some(o), Some(n)) = (st.oldest, st.newest) {
        println!("  oldest {}   newest {}", o.to_rfc3339(), n.to_rfc3339());
    }
    if st.total > 0 {
        println!("  {:<24} {:<18} {:>8}", "destination", "reason", "count");
    }
    for (dest, reasons) in &st.by_destination_reason {
        for (reason, count) in reasons {
            println!("  {dest:<24} {reason:<18} {count:>8}");
        }
    }
    Ok(())
}

/// Prints the dead letters matching `filter`, oldest first, at most `limit`, as they are
/// read.
pub async fn list(
    target: Target,
    filter: Filter,
    limit: Option<usize>,
    format: RenderFormat,
) -> anyhow::Result<ExitCode> {
    let t = match target.resolve() {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let conn = super::connect(&t.url, "dlq").await?;
    let mut out = Letters::new(format, limit.unwrap_or(usize::MAX));
    let read = dlq::each(&conn, &t.topology, t.max_event_bytes, |l| {
        if filter.matches(&l.summary()) {
            out.print(&l)?;
        }
        Ok(())
    })
    .await;
    let _ = conn.close(200, "done".into()).await;
    read?;
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}

/// `dlq list` output, printed as the dead letters are read: nothing is gathered first.
struct Letters {
    format: RenderFormat,
    left: usize,
    printed: usize,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl Letters {
    fn new(format: RenderFormat, limit: usize) -> Letters {
        Letters {
            format,
            left: limit,
            printed: 0,
            out: std::io::BufWriter::new(std::io::stdout()),
        }
    }

    /// Prints one dead letter, while under the limit.
    fn print(&mut self, l: &DeadLetter) -> anyhow::Result<()> {
        if self.left == 0 {
            return Ok(());
        }
        self.left -= 1;
        match self.format {
            RenderFormat::Text => writeln!(self.out, "{}", summary_line(&l.summary()))?,
            RenderFormat::Json => {
                self.out
                    .write_all(if self.printed == 0 { b"[\n" } else { b",\n" })?;
                serde_json::to_writer_pretty(&mut self.out, &l.shown())?;
            }
        }
        self.printed += 1;
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        if let RenderFormat::Json = self.format {
            self.out
                .write_all(if self.printed == 0 { b"[]\n" } else { b"\n]\n" })?;
        }
        self.out.flush()?;
        Ok(())
    }
}
