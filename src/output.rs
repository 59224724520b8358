//! `-o table|wide|json|yaml` for the commands that print objects, as
//! kubectl has it: scripts read JSON or YAML and never parse a table. JSON
//! and YAML follow the proto3 JSON mapping of the objects the API returns
//! (enums by name, 64-bit integers as strings, the .proto's field names).

use std::io::Write;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A table for people (the default).
    #[default]
    Table,
    /// The table with more columns.
    Wide,
    /// The objects as JSON; a list as {"items": [...]}.
    Json,
    /// The objects as YAML; a list as items: [...].
    Yaml,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Output format: table, wide, json or yaml.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

impl Format {
    /// Whether the output is for programs (JSON or YAML).
    pub fn structured(self) -> bool {
        matches!(self, Format::Json | Format::Yaml)
    }
}

#[derive(Serialize)]
struct List<'a, T> {
    items: &'a [T],
}

/// Prints one object: `text` for a table, the object otherwise.
pub fn object<T: Serialize>(
    format: Format,
    object: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Table | Format::Wide => print(&text()),
        Format::Json | Format::Yaml => print(&encode(format, object)?),
    }
}

/// Prints a list: `table(wide)` for a table, `{"items": [...]}` otherwise.
pub fn list<T: Serialize>(
    format: Format,
    items: &[T],
    table: impl FnOnce(bool) -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Table => print(&table(false)),
        Format::Wide => print(&table(true)),
        Format::Json | Format::Yaml => print(&encode(format, &List { items })?),
    }
}

fn encode<T: Serialize>(format: Format, value: &T) -> anyhow::Result<String> {
    Ok(match format {
        Format::Yaml => serde_yaml_ng::to_string(value)?.trim_end().to_string(),
        _ => serde_json::to_string_pretty(value)?,
    })
}

/// `println!` for a reader that may go away (`genfleet jobs | head`, a
/// terminal closed under `genfleet up`): a line that cannot be written is
/// dropped. `println!` panics on the broken pipe, which takes a server
/// down with it.
#[macro_export]
macro_rules! say {
    () => {
        $crate::output::line(std::io::stdout(), format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(std::io::stdout(), format_args!($($arg)*))
    };
}

/// `eprintln!` that drops a line nobody can read, as `say!` does.
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {
        $crate::output::line(std::io::stderr(), format_args!($($arg)*))
    };
}

/// Writes one line to `to`; what cannot be written is dropped (see `say!`).
pub fn line(mut to: impl Write, args: std::fmt::Arguments) {
    let _ = to
        .write_fmt(args)
        .and_then(|()| to.write_all(b"\n"))
        .and_then(|()| to.flush());
}

/// Writes `text` to stdout, ending in one newline whether or not it
/// brought its own (tables are rendered with theirs). A reader that went
/// away (`| head`) ends the output quietly instead of a panic.
pub fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let text = text.trim_end_matches('\n');
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
