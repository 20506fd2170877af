//! `postback-relay dlq stats` and `dlq list`: the dead-letter queue, read without consuming it.
//! What they print is scrubbed of the config's secrets.

use std::io::Write as _;
use std::process::ExitCode;

use postback_relay::contract::redact::Secrets;
use postback_relay::operate::dlq::{self, DeadLetter, Filter, Stats};

use super::{RenderFormat, Resolved, Target, summary_line, write_json};

/// Prints the counts of the whole queue by destination and reason, and its oldest and newest
/// dead letter.
pub async fn stats(target: Target, format: RenderFormat) -> anyhow::Result<ExitCode> {
    let t = match target.resolve() {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    read_stats(&t, format).await.map_err(|e| t.scrubbed(e))?;
    Ok(ExitCode::SUCCESS)
}

async fn read_stats(t: &Resolved, format: RenderFormat) -> anyhow::Result<()> {
    let conn = super::connect(&t.url, t.tls.as_ref(), "dlq").await?;
    let st = dlq::stats(&conn, &t.topology, t.max_event_bytes).await;
    let _ = conn.close(200, "done".into()).await;
    print_stats(&t.topology.dead, &st?, format, &t.secrets)
}

fn print_stats(
    queue: &str,
    st: &Stats,
    format: RenderFormat,
    secrets: &Secrets,
) -> anyhow::Result<()> {
    if let RenderFormat::Json = format {
        let mut out = std::io::stdout().lock();
        write_json(&mut out, st, secrets)?;
        writeln!(out)?;
        return Ok(());
    }
    let mut lines = vec![format!("{queue}: {} dead letter(s)", st.total)];
    if let (Some(o), Some(n)) = (st.oldest, st.newest) {
        lines.push(format!(
            "  oldest {}   newest {}",
            o.to_rfc3339(),
            n.to_rfc3339()
        ));
    }
    if st.total > 0 {
        lines.push(format!(
            "  {:<24} {:<18} {:>8}",
            "destination", "reason", "count"
        ));
    }
    for (dest, reasons) in &st.by_destination_reason {
        for (reason, count) in reasons {
            lines.push(format!("  {dest:<24} {reason:<18} {count:>8}"));
        }
    }
    for line in lines {
        println!("{}", super::printable(&secrets.scrub(&line)));
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
    let out = Letters::new(format, limit.unwrap_or(usize::MAX), &t.secrets);
    read_list(&t, &filter, out)
        .await
        .map_err(|e| t.scrubbed(e))?;
    Ok(ExitCode::SUCCESS)
}

async fn read_list(t: &Resolved, filter: &Filter, mut out: Letters<'_>) -> anyhow::Result<()> {
    let conn = super::connect(&t.url, t.tls.as_ref(), "dlq").await?;
    let read = dlq::each(&conn, &t.topology, t.max_event_bytes, |l| {
        if filter.matches(&l.summary()) {
            out.print(&l)?;
        }
        Ok(())
    })
    .await;
    let _ = conn.close(200, "done".into()).await;
    read?;
    out.finish()
}

/// `dlq list` output, printed as the dead letters are read: nothing is gathered first.
struct Letters<'s> {
    format: RenderFormat,
    left: usize,
    printed: usize,
    secrets: &'s Secrets,
    out: std::io::BufWriter<std::io::Stdout>,
}

impl<'s> Letters<'s> {
    fn new(format: RenderFormat, limit: usize, secrets: &'s Secrets) -> Letters<'s> {
        Letters {
            format,
            left: limit,
            printed: 0,
            secrets,
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
            RenderFormat::Text => {
                let line = summary_line(&l.summary());
                writeln!(self.out, "{}", self.secrets.scrub(&line))?
            }
            RenderFormat::Json => {
                self.out
                    .write_all(if self.printed == 0 { b"[\n" } else { b",\n" })?;
                write_json(&mut self.out, &l.shown(), self.secrets)?;
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
