//! The terminal the live view draws on: standard error, with the row arithmetic indicatif
//! leaves to the terminal done here.
//!
//! indicatif ends every line of a frame by padding it with spaces to the full width and
//! lets the terminal wrap to the next row, so to a terminal that reflows on resize
//! (tmux, VTE, kitty, alacritty, iTerm2, Windows Terminal) a whole frame is one long
//! wrapped line. After the window narrows, the frame takes more rows than indicatif
//! moves up over, and the old header and step lines stay on the screen; after it widens,
//! it takes fewer and the redraw overwrites finished steps above it. This terminal:
//! - ends each line with a real line break and clears the rest of the row instead of
//!   padding, so rows stay rows;
//! - remembers the display width of each line of the last frame, and moves up over
//!   the rows those lines take on the terminal as it is now (each
//!   `ceil(width / columns)`: more than one after the window narrowed);
//! - clears from the end of each frame to the end of the screen, so a frame shorter
//!   than the last leaves nothing below it.
//!
//! Lines are one column short of the terminal's width (see [`width`]). The width is
//! read at every redraw, so a resize (SIGWINCH) takes effect at the next
//! one, within a tenth of a second.
//!
//! What no cursor movement can mend: a window narrowed after a frame read the width and
//! before the terminal drew that frame. The terminal reflows the old frame into more rows
//! than the frame's cursor-up moves over, and those rows stay above it. The window is
//! the time one frame takes to reach the terminal; the next frames are right again.

use std::io::{self, Write as _};
use std::sync::Mutex;

use console::Term;
use indicatif::TermLike;

/// The width assumed when the terminal does not say.
pub const FALLBACK_WIDTH: usize = 80;

/// The columns of standard error's terminal.
fn columns() -> usize {
    Term::stderr()
        .size_checked()
        .map_or(FALLBACK_WIDTH, |(_rows, cols)| usize::from(cols))
}

/// The width the view draws in: one column short of standard error's terminal, so that
/// no line fills its row (a full row leaves the cursor on its last column, where erasing
/// the rest of the row would erase that column's character).
pub fn width() -> usize {
    columns().saturating_sub(1).max(1)
}

/// What was drawn: the lines of the frame being written and of the one before.
#[derive(Debug, Default)]
struct Frame {
    /// Display widths of the lines of the last finished frame.
    last: Vec<usize>,
    /// Display widths of the lines written in this frame so far.
    current: Vec<usize>,
    /// Whether the next `write_str` is a line (else it is the padding after one).
    expect_line: bool,
    /// Whether this frame has moved the cursor up already (its first move is over the
    /// last frame; later ones are indicatif's own, within this frame).
    moved: bool,
}

/// Standard error as indicatif's draw target.
#[derive(Debug)]
pub struct LiveTerm {
    term: Term,
    frame: Mutex<Frame>,
}

impl LiveTerm {
    pub fn stderr() -> Self {
        LiveTerm {
            term: Term::stderr(),
            frame: Mutex::new(Frame {
                expect_line: true,
                ..Frame::default()
            }),
        }
    }

    fn frame(&self) -> std::sync::MutexGuard<'_, Frame> {
        self.frame
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn raw(&self, s: &str) -> io::Result<()> {
        (&self.term).write_all(s.as_bytes())
    }
}

/// The rows `lines` (display widths) take on a terminal `cols` columns wide that
/// reflowed them: a line of N columns takes `ceil(N / cols)` rows, an empty one one.
fn rows(lines: &[usize], cols: usize) -> usize {
    let width = cols.max(1);
    lines.iter().map(|w| w.div_ceil(width).max(1)).sum()
}

impl TermLike for LiveTerm {
    fn width(&self) -> u16 {
        u16::try_from(width()).unwrap_or(u16::MAX)
    }

    fn height(&self) -> u16 {
        self.term.size_checked().map_or(24, |(rows, _)| rows)
    }

    fn move_cursor_up(&self, n: usize) -> io::Result<()> {
        let mut frame = self.frame();
        if frame.moved {
            drop(frame);
            return self.term.move_cursor_up(n);
        }
        frame.moved = true;
        // indicatif moves over the last n + 1 rows it drew (the bars; text lines above
        // them stay): the last n + 1 lines of the last frame, one row each when drawn.
        // Measured against the terminal as it is now, not as the frame was drawn for:
        // a resize while a frame is drawn leaves its lines at the old width.
        let lines = frame.last.len().min(n + 1);
        let over = rows(&frame.last[frame.last.len() - lines..], columns()).saturating_sub(1);
        drop(frame);
        if n == 0 || over <= n {
            return self.term.move_cursor_up(n);
        }
        self.term.move_cursor_up(over)?;
        // The rows the old lines were reflowed into go; erasing the screen below is
        // kept to this case, since a terminal may take an erase from its top-left
        // corner for a clear screen and push the screen into its scroll-back (tmux).
        self.raw("\r\x1b[J")
    }

    fn move_cursor_down(&self, n: usize) -> io::Result<()> {
        self.term.move_cursor_down(n)
    }

    fn move_cursor_right(&self, n: usize) -> io::Result<()> {
        self.term.move_cursor_right(n)
    }

    fn move_cursor_left(&self, n: usize) -> io::Result<()> {
        self.term.move_cursor_left(n)
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.term.write_line(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        if s == "\r" {
            return self.raw(s);
        }
        let mut frame = self.frame();
        if frame.expect_line {
            frame.expect_line = false;
            let first = frame.current.is_empty();
            frame.current.push(console::measure_text_width(s));
            drop(frame);
            if !first {
                self.raw("\r\n")?;
            }
            self.raw(s)
        } else {
            // The padding to the full width: clear the rest of the row instead.
            frame.expect_line = true;
            drop(frame);
            self.raw("\x1b[K")
        }
    }

    fn clear_line(&self) -> io::Result<()> {
        self.term.clear_line()
    }

    fn flush(&self) -> io::Result<()> {
        let mut frame = self.frame();
        frame.last = std::mem::take(&mut frame.current);
        frame.expect_line = true;
        frame.moved = false;
        let ends_in_text = frame.last.last().is_some_and(|w| *w > 0);
        drop(frame);
        if ends_in_text {
            // Nothing of an older, taller frame stays below this one (the cursor is
            // past the start of a row: not the top-left corner, see move_cursor_up).
            self.raw("\x1b[J")?;
        }
        self.term.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::rows;

    #[test]
    fn rows_after_a_reflow() {
        assert_eq!(rows(&[100, 100, 20], 100), 3);
        assert_eq!(rows(&[100, 100, 20], 80), 5);
        assert_eq!(rows(&[200, 0], 80), 4);
    }
}
