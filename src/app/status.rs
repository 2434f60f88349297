//! A view's last message, typed: its severity decides how it is drawn (only errors in the
//! error colour), where before every view guessed it from the text.

/// How a message is meant.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Severity {
    /// Something done, or something to do next.
    #[default]
    Info,
    /// Work under way ("training…").
    Progress,
    /// Something failed or was refused.
    Error,
}

/// A message and its severity. It reads as its text (`Deref<Target = str>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub severity: Severity,
    pub text: String,
}

impl Status {
    pub fn info(text: impl Into<String>) -> Self {
        Self {
            severity: Severity::Info,
            text: text.into(),
        }
    }

    pub fn progress(text: impl Into<String>) -> Self {
        Self {
            severity: Severity::Progress,
            text: text.into(),
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            text: text.into(),
        }
    }

    /// What a background job's end leaves: `done` when it finished, `stopped` when it was
    /// cancelled (its error "stopped"), its error otherwise.
    pub fn job_end(result: Result<(), String>, done: String, stopped: String) -> Self {
        match result {
            Ok(()) => Self::info(done),
            Err(e) if e == "stopped" => Self::info(stopped),
            Err(e) => Self::error(format!("error: {e}")),
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Draws the message (nothing when empty): errors in the error colour, work under way
    /// weak, the rest as strong text.
    pub fn ui(&self, ui: &mut egui::Ui) {
        if self.text.is_empty() {
            return;
        }
        match self.severity {
            Severity::Error => ui.colored_label(ui.visuals().error_fg_color, &self.text),
            Severity::Progress => ui.weak(&self.text),
            Severity::Info => ui.strong(&self.text),
        };
    }
}

impl std::ops::Deref for Status {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// "now using X" was painted in the error colour: the severity, not the text, decides.
    #[test]
    fn severity_is_what_the_message_was_made_as() {
        assert!(!Status::info("now using mnist-cnn").is_error());
        assert!(Status::error("cannot write").is_error());
        assert!(!Status::progress("error bars drawn…").is_error());
        let mut s = Status::error("x");
        s.clear();
        assert!(s.is_empty() && !s.is_error());
        assert_eq!(format!("{}", Status::info("a")), "a");
    }
}
