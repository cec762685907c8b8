//! What a person (keyboard) or a script (`--script`, standard input) can ask of the viewer,
//! and the key bindings.

use std::str::FromStr;
use std::time::Duration;

use minifb::Key;

/// A request from the keyboard or a script: for the control core, or for the viewer's side
/// (the window, the speakers, the run itself).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Core(CoreCommand),
    Local(LocalCommand),
}

/// What the control core acts on (and tells the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreCommand {
    /// Rendition by position in the server's ladder, 0 = first (highest).
    Quality(u8),
    /// Next higher rendition.
    QualityUp,
    /// Next lower rendition.
    QualityDown,
    /// Automatic rendition choice.
    Auto,
    AudioBitrateUp,
    AudioBitrateDown,
    /// Pause or resume the stream (the server stops sending).
    TogglePause,
    Pause,
    Resume,
}

/// What the viewer's side handles without the core: the window, the speakers, the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalCommand {
    /// Mute or unmute the speakers.
    ToggleMute,
    ToggleStats,
    ToggleHelp,
    Quit,
}

impl From<CoreCommand> for Command {
    fn from(c: CoreCommand) -> Self {
        Command::Core(c)
    }
}

impl From<LocalCommand> for Command {
    fn from(c: LocalCommand) -> Self {
        Command::Local(c)
    }
}

/// As the command itself (`Quality(2)`, `Quit`): logs name commands the same either way.
impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Core(c) => c.fmt(f),
            Command::Local(c) => c.fmt(f),
        }
    }
}

/// The key bindings, as shown by the help overlay.
pub const HELP: &[(&str, &str)] = &[
    ("1-9", "rendition 1-9 of the ladder"),
    ("Up / +", "higher quality"),
    ("Down / -", "lower quality"),
    ("A", "automatic quality"),
    ("[ / ]", "audio bitrate down / up"),
    ("M", "mute / unmute"),
    ("Space", "pause / resume"),
    ("S", "stats overlay"),
    ("H / F1", "this help"),
    ("Q / Esc", "quit"),
];

/// The command a key stands for.
pub fn for_key(key: Key) -> Option<Command> {
    use CoreCommand::*;
    use LocalCommand::*;
    Some(match key {
        Key::Key1 | Key::NumPad1 => Quality(0).into(),
        Key::Key2 | Key::NumPad2 => Quality(1).into(),
        Key::Key3 | Key::NumPad3 => Quality(2).into(),
        Key::Key4 | Key::NumPad4 => Quality(3).into(),
        Key::Key5 | Key::NumPad5 => Quality(4).into(),
        Key::Key6 | Key::NumPad6 => Quality(5).into(),
        Key::Key7 | Key::NumPad7 => Quality(6).into(),
        Key::Key8 | Key::NumPad8 => Quality(7).into(),
        Key::Key9 | Key::NumPad9 => Quality(8).into(),
        Key::Up | Key::Equal | Key::NumPadPlus => QualityUp.into(),
        Key::Down | Key::Minus | Key::NumPadMinus => QualityDown.into(),
        Key::A => Auto.into(),
        Key::LeftBracket => AudioBitrateDown.into(),
        Key::RightBracket => AudioBitrateUp.into(),
        Key::M => ToggleMute.into(),
        Key::Space => TogglePause.into(),
        Key::S => ToggleStats.into(),
        Key::H | Key::F1 => ToggleHelp.into(),
        Key::Q | Key::Escape => Quit.into(),
        _ => return None,
    })
}

/// Why a scripted command could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown command {0:?}: use quality=N (1-based), up, down, auto, audio-up, audio-down, mute, pause, resume, quit")]
pub struct UnknownCommand(String);

impl FromStr for Command {
    type Err = UnknownCommand;

    /// Script and standard-input form: `quality=2` (or `quality 2`, 1-based like the keys),
    /// `up`, `down`, `auto`, `audio-up`, `audio-down`, `mute`, `pause`, `resume`, `quit`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        let err = || UnknownCommand(s.trim().to_string());
        Ok(match t.as_str() {
            "up" => CoreCommand::QualityUp.into(),
            "down" => CoreCommand::QualityDown.into(),
            "auto" => CoreCommand::Auto.into(),
            "audio-up" => CoreCommand::AudioBitrateUp.into(),
            "audio-down" => CoreCommand::AudioBitrateDown.into(),
            "mute" => LocalCommand::ToggleMute.into(),
            "pause" => CoreCommand::Pause.into(),
            "resume" => CoreCommand::Resume.into(),
            "quit" => LocalCommand::Quit.into(),
            _ => {
                let n = t
                    .strip_prefix("quality")
                    .map(|r| r.trim_start_matches(['=', ' ']))
                    .ok_or_else(err)?;
                let n: u8 = n.parse().map_err(|_| err())?;
                if n == 0 {
                    return Err(err());
                }
                CoreCommand::Quality(n - 1).into()
            }
        })
    }
}

/// The rendition to start with (`--quality`): automatic, a position in the server's ladder,
/// or a rendition's name as the server announces it (`180p`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum QualityWish {
    #[default]
    Auto,
    /// Position in the ladder, 0 = first (highest); `--quality 1` is position 0.
    Position(u8),
    /// A rendition's name, matched without regard to case once the ladder is known.
    Name(String),
}

impl QualityWish {
    /// The most renditions a ladder has (positions 1-16 on the command line).
    pub const MAX_POSITION: u8 = 16;
}

impl FromStr for QualityWish {
    type Err = String;

    /// `auto`, a 1-based position (`1` = highest, as the keys 1-9), or a rendition's name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(QualityWish::Auto);
        }
        if t.is_empty() {
            return Err("give auto, a position (1 = highest) or a rendition's name".into());
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            return match t.parse::<u8>() {
                Ok(n @ 1..=Self::MAX_POSITION) => Ok(QualityWish::Position(n - 1)),
                _ => Err(format!(
                    "rendition positions are 1 to {}, not {t}",
                    Self::MAX_POSITION
                )),
            };
        }
        if t.len() > 64 || t.chars().any(char::is_control) {
            return Err(format!("{t:?} is not a rendition's name"));
        }
        Ok(QualityWish::Name(t.to_string()))
    }
}

/// Parses `--script`: comma-separated `SECONDS:COMMAND` pairs, e.g. `2:quality=3,4.5:up`.
pub fn parse_script(text: &str) -> Result<Vec<(Duration, Command)>, String> {
    let mut steps = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (at, cmd) = item
            .split_once(':')
            .ok_or_else(|| format!("script step {item:?} is not SECONDS:COMMAND"))?;
        let secs: f64 = at
            .trim()
            .parse()
            .map_err(|_| format!("script step {item:?}: {at:?} is not a number of seconds"))?;
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("script step {item:?}: time must be >= 0"));
        }
        let cmd: Command = cmd.parse().map_err(|e: UnknownCommand| e.to_string())?;
        steps.push((Duration::from_secs_f64(secs), cmd));
    }
    steps.sort_by_key(|(t, _)| *t);
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_their_commands() {
        assert_eq!(for_key(Key::Key1), Some(CoreCommand::Quality(0).into()));
        assert_eq!(for_key(Key::Key9), Some(CoreCommand::Quality(8).into()));
        assert_eq!(for_key(Key::NumPad3), Some(CoreCommand::Quality(2).into()));
        assert_eq!(for_key(Key::Up), Some(CoreCommand::QualityUp.into()));
        assert_eq!(for_key(Key::Equal), Some(CoreCommand::QualityUp.into()));
        assert_eq!(for_key(Key::Down), Some(CoreCommand::QualityDown.into()));
        assert_eq!(for_key(Key::Minus), Some(CoreCommand::QualityDown.into()));
        assert_eq!(for_key(Key::A), Some(CoreCommand::Auto.into()));
        assert_eq!(
            for_key(Key::LeftBracket),
            Some(CoreCommand::AudioBitrateDown.into())
        );
        assert_eq!(
            for_key(Key::RightBracket),
            Some(CoreCommand::AudioBitrateUp.into())
        );
        assert_eq!(for_key(Key::M), Some(LocalCommand::ToggleMute.into()));
        assert_eq!(for_key(Key::Space), Some(CoreCommand::TogglePause.into()));
        assert_eq!(for_key(Key::S), Some(LocalCommand::ToggleStats.into()));
        assert_eq!(for_key(Key::H), Some(LocalCommand::ToggleHelp.into()));
        assert_eq!(for_key(Key::F1), Some(LocalCommand::ToggleHelp.into()));
        assert_eq!(for_key(Key::Q), Some(LocalCommand::Quit.into()));
        assert_eq!(for_key(Key::Escape), Some(LocalCommand::Quit.into()));
        assert_eq!(for_key(Key::Z), None);
    }

    /// The window logs `key Key3: Quality(2)` (the end-to-end key test reads it).
    #[test]
    fn commands_debug_as_themselves() {
        assert_eq!(format!("{:?}", for_key(Key::Key3).unwrap()), "Quality(2)");
        assert_eq!(format!("{:?}", Command::from(LocalCommand::Quit)), "Quit");
    }

    #[test]
    fn help_lists_the_ten_bindings() {
        // One line per binding of `for_key`: numbers, up, down, auto, audio, mute, pause,
        // stats, help, quit.
        assert_eq!(HELP.len(), 10);
    }

    #[test]
    fn script_commands_parse() {
        assert_eq!(
            "quality=2".parse::<Command>(),
            Ok(CoreCommand::Quality(1).into())
        );
        assert_eq!(
            "Quality 3".parse::<Command>(),
            Ok(CoreCommand::Quality(2).into())
        );
        assert_eq!(" up ".parse::<Command>(), Ok(CoreCommand::QualityUp.into()));
        assert_eq!(
            "audio-down".parse::<Command>(),
            Ok(CoreCommand::AudioBitrateDown.into())
        );
        assert!("quality=0".parse::<Command>().is_err());
        assert!("jump".parse::<Command>().is_err());
        let steps = parse_script("3:down, 1.5:quality=2").unwrap();
        assert_eq!(
            steps,
            vec![
                (Duration::from_millis(1500), CoreCommand::Quality(1).into()),
                (Duration::from_secs(3), CoreCommand::QualityDown.into())
            ]
        );
        assert!(parse_script("soon:up").is_err());
        assert!(parse_script("1:fly")
            .unwrap_err()
            .contains("unknown command"));
    }

    #[test]
    fn quality_takes_a_position_a_name_or_auto() {
        assert_eq!("auto".parse(), Ok(QualityWish::Auto));
        assert_eq!("AUTO".parse(), Ok(QualityWish::Auto));
        assert_eq!("1".parse(), Ok(QualityWish::Position(0)));
        assert_eq!("16".parse(), Ok(QualityWish::Position(15)));
        assert_eq!("180p".parse(), Ok(QualityWish::Name("180p".into())));
        assert!("0".parse::<QualityWish>().is_err());
        assert!("17".parse::<QualityWish>().is_err());
        assert!("".parse::<QualityWish>().is_err());
    }
}
