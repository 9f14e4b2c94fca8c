//! Plots for the HTML report, each an SVG document to inline into the page.
//!
//! Three plots are drawn with [plotters]' SVG backend:
//! - [`route_svg`]: the route fed to the GNSS simulator against the positions the backend
//!   received,
//! - [`latency_svg`]: alarm latencies per alarm kind, with their limits,
//! - [`timeline_svg`]: rig events in lanes over device time, with scenario spans behind them.
//!
//! The SVG has no script, no external reference and no XML prolog; it starts with `<svg`
//! and ends with `</svg>` (plus a final newline). Text is set in the family `sans-serif`:
//! plotters measures it with DejaVu Sans, which is compiled into the binary (see
//! `font/LICENSE`), and the browser draws it with its own sans-serif font, so text widths
//! can differ slightly from the measured ones.
//!
//! # Untrusted input
//! Positions, times and labels come from the device under test and are treated as
//! hostile. No input makes these functions panic, and the output size is bounded:
//! - values that are not finite (NaN, ±inf; +inf latencies excepted, see [`latency_svg`]),
//!   latitudes/longitudes outside ±90/±180, and items outside the plotted range are left
//!   out and counted in [`Plot::skipped`];
//! - marks are thinned losslessly first — items that land on the same pixel are drawn
//!   once — and then, if a series still has more than [`MAX_MARKS`] marks, every k-th
//!   one and the last are kept, k chosen so at most [`MAX_MARKS`] remain; the items
//!   dropped are counted in [`Plot::thinned`];
//! - timeline events are binned into columns of [`TIMELINE_BIN_PX`] pixels per lane, and
//!   adjacent busy columns are merged into one mark, so a lane has at most one mark per
//!   bin for instants and one per bin for intervals, whatever the number of events;
//! - labels have control and bidirectional-override characters replaced and are cut to
//!   a bounded length; plotters' SVG backend escapes `<`, `>`, `&` and quotes in text and
//!   attribute values.
//!
//! A panic inside plotters (it can panic on degenerate ranges) is caught with
//! [`std::panic::catch_unwind`] and returned as a [`PlotError`]; the panic message is
//! still printed by the process's panic hook. Ranges are made non-degenerate before
//! plotters sees them, so this is a last line of defence.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use plotters::backend::SVGBackend;
use plotters::chart::{ChartBuilder, ChartContext};
use plotters::coord::cartesian::Cartesian2d;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::drawing::{DrawingArea, IntoDrawingArea};
use plotters::element::{Circle, PathElement, Polygon, Rectangle};
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{Color, FontDesc, FontFamily, FontStyle, RGBColor, TextStyle};

/// Most marks drawn for one series (route vertices, one class of positions, one
/// latency row) after lossless pixel merging; beyond that every k-th mark is kept.
pub const MAX_MARKS: usize = 2000;
/// Width in pixels of a timeline bin: events of one lane falling in the same bin are
/// drawn as one mark.
pub const TIMELINE_BIN_PX: i32 = 2;
/// Most timeline lanes drawn; events of further lanes are skipped.
pub const MAX_LANES: usize = 100;
/// Most alarm kinds (rows) in the latency plot; samples of further kinds are skipped.
pub const MAX_KINDS: usize = 40;
/// Latencies larger than this (in seconds, finite) are treated as out of range and
/// skipped; +inf is the "no alarm" marker instead.
pub const MAX_LATENCY_S: f64 = 1e6;
/// Most scenario spans drawn on a timeline.
pub const MAX_SPANS: usize = 1000;
/// Most distinct limits drawn for one alarm kind.
const MAX_LIMITS_PER_KIND: usize = 8;
/// Smallest half-width of the route plot, in metres, so a stationary route is not a dot.
const MIN_HALF_M: f64 = 50.0;
/// Mean Earth radius (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The embedded font, used by plotters to measure text.
static FONT_BYTES: &[u8] = include_bytes!("font/DejaVuSans.ttf");

// Colours: the Okabe–Ito palette (distinguishable with the common colour-vision
// deficiencies), plus greys for ink and grid.
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const MUTED: RGBColor = RGBColor(0x55, 0x55, 0x55);
const GRID_BOLD: RGBColor = RGBColor(0xD0, 0xD0, 0xD0);
const GRID_LIGHT: RGBColor = RGBColor(0xEE, 0xEE, 0xEE);
const WHITE: RGBColor = RGBColor(0xFF, 0xFF, 0xFF);
const C_BLUE: RGBColor = RGBColor(0x00, 0x72, 0xB2);
const C_SKY: RGBColor = RGBColor(0x56, 0xB4, 0xE9);
const C_VERMILLION: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
const C_GREEN: RGBColor = RGBColor(0x00, 0x9E, 0x73);
const C_AMBER: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
const C_GREY: RGBColor = RGBColor(0x99, 0x99, 0x99);

/// A plot could not be drawn: an unusable argument (such as a time range that is not
/// finite), a plotters error, or a panic inside plotters.
#[derive(Debug)]
pub struct PlotError(pub String);

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plot failed: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

/// A rendered plot: the SVG document (starting with `<svg`, no XML prolog) and how
/// many input items were left out because they were not finite / out of range.
///
/// Every input item is counted exactly once in `skipped`, `drawn` or `thinned`.
#[derive(Debug, Clone)]
pub struct Plot {
    /// The SVG document.
    pub svg: String,
    /// Input items left out: not finite, invalid, outside the plotted area or time
    /// range, or in a lane / kind that is not drawn.
    pub skipped: usize,
    /// Input items shown, alone or merged with others into one mark.
    pub drawn: usize,
    /// Input items left out only to bound the output (every k-th mark kept).
    pub thinned: usize,
    /// Data marks in the SVG (polyline vertices, dots, ticks, bars, bands); legend,
    /// axes and labels are not counted.
    pub marks: usize,
}

/// Route fed by the GNSS simulator versus positions the backend received.
///
/// `t_s` is not used by the plot; points are joined in slice order.
#[derive(Debug, Clone, Copy)]
pub struct TrackPoint {
    /// Time of the point, seconds (device time).
    pub t_s: f64,
    /// Latitude, degrees (WGS 84).
    pub lat: f64,
    /// Longitude, degrees (WGS 84).
    pub lon: f64,
}

/// A position the backend received from the device.
///
/// `t_s` is not used by the plot.
#[derive(Debug, Clone, Copy)]
pub struct ReceivedPoint {
    /// Time the position was reported, seconds (device time).
    pub t_s: f64,
    /// Latitude, degrees (WGS 84).
    pub lat: f64,
    /// Longitude, degrees (WGS 84).
    pub lon: f64,
    /// Whether the device marked the position as a valid fix.
    pub valid: bool,
}

/// One alarm latency measurement.
#[derive(Debug, Clone)]
pub struct LatencySample {
    /// Alarm kind, one row of the plot (e.g. "SOS alarm").
    pub kind: String,
    /// Latency in seconds (device time); `f64::INFINITY` means no alarm arrived within
    /// the limit.
    pub value_s: f64,
    /// The limit the latency is held to, seconds.
    pub limit_s: Option<f64>,
    /// Scenario that measured it; not drawn.
    pub scenario: String,
}

/// A rig event on the timeline; with `end_s`, an interval (power on, a call, a connection).
#[derive(Debug, Clone)]
pub struct TimelineEvent {
    /// Start (or the instant), seconds (device time).
    pub t_s: f64,
    /// End of an interval, seconds; `f64::INFINITY` means still running at the end.
    pub end_s: Option<f64>,
    /// Lane name; must be one of the lanes passed to [`timeline_svg`].
    pub lane: String,
    /// Short text, drawn next to the mark only in lanes with few events.
    pub label: String,
}

/// A scenario's span, shaded behind the lanes and coloured by verdict.
#[derive(Debug, Clone)]
pub struct Span {
    /// Start, seconds (device time).
    pub start_s: f64,
    /// End, seconds (device time).
    pub end_s: f64,
    /// Text drawn at the top of the band when it fits.
    pub label: String,
    /// "pass"/"passed" green, "fail"/"failed" red, "inconclusive" amber, anything else
    /// grey (case-insensitive).
    pub verdict: String,
}

// ---------------------------------------------------------------------------------------
// Shared machinery

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// What a drawing closure reports back.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    skipped: usize,
    drawn: usize,
    thinned: usize,
    marks: usize,
}

fn perr<E: fmt::Display>(e: E) -> PlotError {
    PlotError(format!("plotters: {e}"))
}

/// Registers the embedded font with plotters, once per process.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError("the embedded font could not be loaded".into()))
    }
}

/// Draws into a fresh SVG document of `size` pixels, turning plotters errors and panics
/// into [`PlotError`].
fn render(
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<Counts, PlotError>,
) -> Result<Plot, PlotError> {
    ensure_font()?;
    let outcome = catch_unwind(AssertUnwindSafe(move || {
        let mut svg = String::new();
        let counts = {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            root.fill(&WHITE).map_err(perr)?;
            let counts = draw(&root)?;
            root.present().map_err(perr)?;
            counts
        };
        Ok::<_, PlotError>((svg, counts))
    }));
    match outcome {
        Ok(Ok((svg, c))) => Ok(Plot {
            svg,
            skipped: c.skipped,
            drawn: c.drawn,
            thinned: c.thinned,
            marks: c.marks,
        }),
        Ok(Err(e)) => Err(e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PlotError(format!(
                "plotters panicked: {}",
                clean_text(&what, 200)
            )))
        }
    }
}

fn font(size: f64) -> TextStyle<'static> {
    FontDesc::new(FontFamily::SansSerif, size, FontStyle::Normal).color(&INK)
}

fn font_at(size: f64, color: &RGBColor, h: HPos, v: VPos) -> TextStyle<'static> {
    FontDesc::new(FontFamily::SansSerif, size, FontStyle::Normal)
        .color(color)
        .pos(Pos::new(h, v))
}

/// Makes untrusted text safe and short: control characters become spaces, characters
/// that XML forbids or that reorder text (bidirectional controls) become U+FFFD, and
/// the result is cut to `max_chars` characters with an ellipsis. Escaping of `<`, `&`
/// and quotes is done by plotters' SVG backend.
fn clean_text(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for (n, c) in s.chars().enumerate() {
        if n >= max_chars {
            out.push('…');
            break;
        }
        let c = match c {
            c if c.is_control() => ' ',
            '\u{FFFE}' | '\u{FFFF}' => '\u{FFFD}',
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => {
                '\u{FFFD}'
            }
            c => c,
        };
        out.push(c);
    }
    out
}

/// Builds a cartesian chart on `area` with the house margins and label areas; draws
/// nothing by itself.
fn chart_on<'a, 'b>(
    area: &'a Area<'b>,
    x: Range<f64>,
    y: Range<f64>,
    y_label_w: u32,
    x_label_h: u32,
) -> Result<Chart<'a, 'b>, PlotError> {
    ChartBuilder::on(area)
        .margin(10)
        .margin_right(24)
        .x_label_area_size(x_label_h)
        .y_label_area_size(y_label_w)
        .build_cartesian_2d(x, y)
        .map_err(perr)
}

/// The plotting rectangle of a chart in backend pixels: (x0, y0, x1, y1).
fn plot_rect(chart: &Chart<'_, '_>) -> (i32, i32, i32, i32) {
    let (xr, yr) = chart.plotting_area().get_pixel_range();
    (
        xr.start,
        yr.start,
        xr.end.max(xr.start + 1),
        yr.end.max(yr.start + 1),
    )
}

/// Keeps every k-th item so at most `max` remain (always keeping the last one).
/// Returns the kept items and how many merged input items were dropped.
fn thin<T: Copy>(items: &[(T, usize)], max: usize) -> (Vec<(T, usize)>, usize) {
    if items.len() <= max || max == 0 {
        return (items.to_vec(), 0);
    }
    let k = items.len().div_ceil(max.saturating_sub(1).max(1));
    let mut kept = Vec::with_capacity(max);
    let mut dropped = 0;
    let last = items.len() - 1;
    for (i, it) in items.iter().enumerate() {
        if i % k == 0 || i == last {
            kept.push(*it);
        } else {
            dropped += it.1;
        }
    }
    (kept, dropped)
}

/// Merges items that fall on the same pixel (first occurrence keeps its place) and
/// counts how many input items each mark stands for.
fn merge_pixels(points: impl Iterator<Item = (i32, i32)>) -> Vec<((i32, i32), usize)> {
    let mut index: HashMap<(i32, i32), usize> = HashMap::new();
    let mut out: Vec<((i32, i32), usize)> = Vec::new();
    for p in points {
        match index.get(&p) {
            Some(&i) => out[i].1 += 1,
            None => {
                index.insert(p, out.len());
                out.push((p, 1));
            }
        }
    }
    out
}

/// A legend entry's symbol.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Line(RGBColor),
    Dot(RGBColor),
    Ring(RGBColor),
    Triangle(RGBColor),
    Tick(RGBColor),
    Bar(RGBColor),
    Band(RGBColor, f64),
    /// Text only.
    Note,
}

const LEGEND_LINE_H: i32 = 20;

/// Lays the legend out left to right from (`x0`, `y0`) in `area`'s coordinates,
/// wrapping at `max_w`; draws it when `draw` is set. Returns the height used.
fn legend(
    area: &Area<'_>,
    items: &[(Mark, String)],
    (x0, y0): (i32, i32),
    max_w: i32,
    draw: bool,
) -> Result<i32, PlotError> {
    if items.is_empty() {
        return Ok(0);
    }
    let style = font_at(12.0, &INK, HPos::Left, VPos::Center);
    let (mut x, mut y) = (x0, y0 + LEGEND_LINE_H / 2);
    for (mark, text) in items {
        let sym_w = if matches!(mark, Mark::Note) { 0 } else { 22 };
        let (tw, _) = area.estimate_text_size(text, &style).map_err(perr)?;
        let w = sym_w + (tw as i32).min(max_w) + 18;
        if x > x0 && x + w > x0 + max_w {
            x = x0;
            y += LEGEND_LINE_H;
        }
        if draw {
            let (sx, sy) = (x + 9, y);
            match *mark {
                Mark::Line(c) => area
                    .draw(&PathElement::new(
                        vec![(sx - 8, sy), (sx + 8, sy)],
                        c.stroke_width(2),
                    ))
                    .map_err(perr)?,
                Mark::Dot(c) => area
                    .draw(&Circle::new((sx, sy), 4, c.filled()))
                    .map_err(perr)?,
                Mark::Ring(c) => area
                    .draw(&Circle::new((sx, sy), 4, c.stroke_width(2)))
                    .map_err(perr)?,
                Mark::Triangle(c) => area
                    .draw(&Polygon::new(
                        vec![(sx - 5, sy - 6), (sx + 6, sy), (sx - 5, sy + 6)],
                        c.filled(),
                    ))
                    .map_err(perr)?,
                Mark::Tick(c) => area
                    .draw(&Rectangle::new(
                        [(sx - 1, sy - 7), (sx + 1, sy + 7)],
                        c.filled(),
                    ))
                    .map_err(perr)?,
                Mark::Bar(c) => area
                    .draw(&Rectangle::new(
                        [(sx - 8, sy - 5), (sx + 8, sy + 5)],
                        c.filled(),
                    ))
                    .map_err(perr)?,
                Mark::Band(c, a) => area
                    .draw(&Rectangle::new(
                        [(sx - 8, sy - 7), (sx + 8, sy + 7)],
                        c.mix(a).filled(),
                    ))
                    .map_err(perr)?,
                Mark::Note => {}
            }
            area.draw_text(text, &style, (x + sym_w, y)).map_err(perr)?;
        }
        x += w;
    }
    Ok(y + LEGEND_LINE_H / 2 - y0)
}

/// A small plot that only says `message`, for inputs with nothing to draw.
fn message_plot(title: &str, message: &str, skipped: usize) -> Result<Plot, PlotError> {
    let mut plot = render((480, 90), |root| {
        let area = root.titled(title, font(16.0)).map_err(perr)?;
        area.draw_text(
            message,
            &font_at(13.0, &MUTED, HPos::Left, VPos::Top),
            (16, 10),
        )
        .map_err(perr)?;
        Ok(Counts::default())
    })?;
    plot.skipped = skipped;
    Ok(plot)
}

/// The half-open index ranges of consecutive `true` items.
fn busy_runs(busy: impl Iterator<Item = bool>) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut start: Option<usize> = None;
    let mut n = 0;
    for (i, b) in busy.enumerate() {
        match (b, start) {
            (true, None) => start = Some(i),
            (false, Some(a)) => {
                runs.push((a, i));
                start = None;
            }
            _ => {}
        }
        n = i + 1;
    }
    if let Some(a) = start {
        runs.push((a, n));
    }
    runs
}

fn plural<'s>(n: usize, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 {
        one
    } else {
        many
    }
}

// ---------------------------------------------------------------------------------------
// Route

fn usable_lat_lon(lat: f64, lon: f64) -> bool {
    lat.is_finite() && lon.is_finite() && lat.abs() <= 90.0 && lon.abs() <= 180.0
}

fn wrap180(deg: f64) -> f64 {
    let d = deg % 360.0;
    if d > 180.0 {
        d - 360.0
    } else if d < -180.0 {
        d + 360.0
    } else {
        d
    }
}

/// Equirectangular projection to metres east/north of a centre: good to well under a
/// percent over a few kilometres, increasingly distorted over hundreds of kilometres and
/// near the poles (the cosine of the centre latitude is kept above 0.01).
#[derive(Debug, Clone, Copy)]
struct Projection {
    lat0: f64,
    lon0: f64,
    cos_lat0: f64,
}

impl Projection {
    /// Centred on the middle of the latitude/longitude bounding box of `points`
    /// (longitudes taken relative to the first point, so a route across the
    /// antimeridian is handled). `points` must not be empty.
    fn around(points: &[(f64, f64)]) -> Projection {
        let (lat_ref, lon_ref) = points.first().copied().unwrap_or((0.0, 0.0));
        let (mut lat_lo, mut lat_hi) = (lat_ref, lat_ref);
        let (mut dlon_lo, mut dlon_hi) = (0.0f64, 0.0f64);
        for &(lat, lon) in points {
            lat_lo = lat_lo.min(lat);
            lat_hi = lat_hi.max(lat);
            let d = wrap180(lon - lon_ref);
            dlon_lo = dlon_lo.min(d);
            dlon_hi = dlon_hi.max(d);
        }
        let lat0 = (lat_lo + lat_hi) / 2.0;
        Projection {
            lat0,
            lon0: wrap180(lon_ref + (dlon_lo + dlon_hi) / 2.0),
            cos_lat0: lat0.to_radians().cos().max(0.01),
        }
    }

    fn project(&self, lat: f64, lon: f64) -> (f64, f64) {
        let east = wrap180(lon - self.lon0).to_radians() * EARTH_RADIUS_M * self.cos_lat0;
        let north = (lat - self.lat0).to_radians() * EARTH_RADIUS_M;
        (east, north)
    }
}

/// A fed position moving faster than this (m/s) is a jump to a new place, not a
/// movement: the route line is cut there.
pub const JUMP_M_PER_S: f64 = 70.0;
/// Most pieces a fed route is cut into; later jumps are drawn joined.
const MAX_PIECES: usize = 200;

/// Draws the route fed to the GNSS simulator and the positions the backend received.
///
/// Positions are projected to metres east/north of the centre of the fed route
/// (equirectangular, fine for routes of a few km), with the same scale on both axes.
/// The axis ranges cover the fed route plus a margin (at least ±50 m); received
/// positions outside them are not drawn, are counted in `skipped`, and the legend says
/// "N positions outside the plotted area" — so a backend reporting 0,0 does not shrink
/// the route to a dot. With no usable fed point the ranges cover all usable received
/// positions. With no usable position at all the result is a small plot saying
/// "no positions" (not an error), whose `skipped` counts the unusable inputs.
///
/// Fed points are joined in order as a line, cut where the position jumps (faster
/// than [`JUMP_M_PER_S`]: a new place, not a movement); consecutive points on the same
/// pixel are merged, and the pieces together keep at most about [`MAX_MARKS`]
/// vertices. Received positions are filled circles
/// (valid fix) or hollow circles (no valid fix), at most [`MAX_MARKS`] of each after
/// merging those on the same pixel. Points with a non-finite or out-of-range latitude
/// or longitude are skipped.
pub fn route_svg(
    title: &str,
    fed: &[TrackPoint],
    received: &[ReceivedPoint],
) -> Result<Plot, PlotError> {
    let title = clean_text(title, 100);
    let fed_ll: Vec<(f64, f64)> = fed
        .iter()
        .filter(|p| usable_lat_lon(p.lat, p.lon))
        .map(|p| (p.lat, p.lon))
        .collect();
    let fed_t: Vec<f64> = fed
        .iter()
        .filter(|p| usable_lat_lon(p.lat, p.lon))
        .map(|p| p.t_s)
        .collect();
    let recv_ll: Vec<(f64, f64, bool)> = received
        .iter()
        .filter(|p| usable_lat_lon(p.lat, p.lon))
        .map(|p| (p.lat, p.lon, p.valid))
        .collect();
    let unusable = (fed.len() - fed_ll.len()) + (received.len() - recv_ll.len());
    if fed_ll.is_empty() && recv_ll.is_empty() {
        return message_plot(&title, "no positions", unusable);
    }

    let basis: Vec<(f64, f64)> = if fed_ll.is_empty() {
        recv_ll.iter().map(|&(la, lo, _)| (la, lo)).collect()
    } else {
        fed_ll.clone()
    };
    let proj = Projection::around(&basis);
    let fed_xy: Vec<(f64, f64)> = fed_ll
        .iter()
        .map(|&(la, lo)| proj.project(la, lo))
        .collect();
    let recv_xy: Vec<(f64, f64, bool)> = recv_ll
        .iter()
        .map(|&(la, lo, v)| {
            let (x, y) = proj.project(la, lo);
            (x, y, v)
        })
        .collect();
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(la, lo) in &basis {
        let (x, y) = proj.project(la, lo);
        x_lo = x_lo.min(x);
        x_hi = x_hi.max(x);
        y_lo = y_lo.min(y);
        y_hi = y_hi.max(y);
    }
    let (cx, cy) = ((x_lo + x_hi) / 2.0, (y_lo + y_hi) / 2.0);
    let half_x = ((x_hi - x_lo) / 2.0 * 1.08).max(MIN_HALF_M);
    let half_y = ((y_hi - y_lo) / 2.0 * 1.08).max(MIN_HALF_M);

    render((800, 680), move |root| {
        let (w, h) = root.dim_in_pixel();
        let area = root.titled(&title, font(16.0)).map_err(perr)?;
        let (_, ah) = area.dim_in_pixel();

        // Where the received positions fall is known only after the ranges are fixed,
        // and the ranges need the plotting area's size: probe it with a throw-away chart
        // (building a chart without a caption draws nothing).
        let legend_h_guess = 2 * LEGEND_LINE_H + 8;
        let (chart_area, _) = area.split_vertically(ah as i32 - legend_h_guess);
        let (pw, ph) = {
            let probe = chart_on(&chart_area, 0.0..1.0, 0.0..1.0, 70, 45)?;
            let (x0, y0, x1, y1) = plot_rect(&probe);
            (f64::from(x1 - x0), f64::from(y1 - y0))
        };
        let m_per_px = (2.0 * half_x / pw).max(2.0 * half_y / ph);
        let (hx, hy) = (m_per_px * pw / 2.0, m_per_px * ph / 2.0);
        let xr = (cx - hx)..(cx + hx);
        let yr = (cy - hy)..(cy + hy);
        let inside = |x: f64, y: f64| xr.contains(&x) && yr.contains(&y);

        let mut chart = chart_on(&chart_area, xr.clone(), yr.clone(), 70, 45)?;
        chart
            .configure_mesh()
            .x_desc("east (m)")
            .y_desc("north (m)")
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .bold_line_style(GRID_BOLD.stroke_width(1))
            .light_line_style(GRID_LIGHT.stroke_width(1))
            .x_labels(8)
            .y_labels(8)
            .draw()
            .map_err(perr)?;

        let mut c = Counts {
            skipped: unusable,
            ..Counts::default()
        };

        // The fed route, cut where the fed position jumps (a new scene, not a
        // movement: faster than JUMP_M_PER_S), so no line is drawn
        // along a path the receiver never took. Each piece: consecutive points on the
        // same pixel merged, then thinned within its share of the mark budget.
        let mut pieces: Vec<Vec<(f64, f64)>> = Vec::new();
        for (i, &(x, y)) in fed_xy.iter().enumerate() {
            let jump = i > 0 && pieces.len() < MAX_PIECES && {
                let (px, py) = fed_xy[i - 1];
                let d = ((x - px).powi(2) + (y - py).powi(2)).sqrt();
                let dt = fed_t[i] - fed_t[i - 1];
                dt.is_finite() && dt > 0.0 && d / dt > JUMP_M_PER_S
            };
            if pieces.is_empty() || jump {
                pieces.push(Vec::new());
            }
            if let Some(last) = pieces.last_mut() {
                last.push((x, y));
            }
        }
        let total = fed_xy.len().max(1);
        for piece in &pieces {
            let mut verts: Vec<((i32, i32), usize)> = Vec::new();
            for &(x, y) in piece {
                if !inside(x, y) {
                    // Cannot happen when the ranges come from the fed route; counted anyway.
                    c.skipped += 1;
                    continue;
                }
                let p = chart.backend_coord(&(x, y));
                match verts.last_mut() {
                    Some((q, n)) if *q == p => *n += 1,
                    _ => verts.push((p, 1)),
                }
            }
            let budget = (MAX_MARKS * piece.len() / total).max(2);
            let (verts, dropped) = thin(&verts, budget);
            c.thinned += dropped;
            c.drawn += verts.iter().map(|v| v.1).sum::<usize>();
            c.marks += verts.len();
            let path: Vec<(i32, i32)> = verts.iter().map(|v| v.0).collect();
            match path.len() {
                0 => {}
                1 => root
                    .draw(&Circle::new(path[0], 2, C_BLUE.filled()))
                    .map_err(perr)?,
                _ => root
                    .draw(&PathElement::new(path, C_BLUE.stroke_width(2)))
                    .map_err(perr)?,
            }
        }

        // Received positions.
        let mut outside = 0usize;
        let (mut n_valid, mut n_nofix) = (0usize, 0usize);
        for want_valid in [false, true] {
            let pts = recv_xy
                .iter()
                .filter(|p| p.2 == want_valid)
                .filter_map(|&(x, y, _)| {
                    if inside(x, y) {
                        Some(chart.backend_coord(&(x, y)))
                    } else {
                        outside += 1;
                        None
                    }
                });
            let merged = merge_pixels(pts);
            let (kept, dropped) = thin(&merged, MAX_MARKS);
            c.thinned += dropped;
            let shown: usize = kept.iter().map(|k| k.1).sum();
            c.drawn += shown;
            c.marks += kept.len();
            if want_valid {
                n_valid = shown + dropped;
            } else {
                n_nofix = shown + dropped;
            }
            for (p, _) in kept {
                let style = if want_valid {
                    C_VERMILLION.filled()
                } else {
                    INK.stroke_width(1)
                };
                root.draw(&Circle::new(p, 3, style)).map_err(perr)?;
            }
        }
        c.skipped += outside;

        let mut items = vec![
            (
                Mark::Line(C_BLUE),
                format!("route fed to the GNSS simulator ({} points)", fed_xy.len()),
            ),
            (
                Mark::Dot(C_VERMILLION),
                format!("backend position, valid fix ({n_valid})"),
            ),
            (
                Mark::Ring(INK),
                format!("backend position without a valid fix ({n_nofix})"),
            ),
        ];
        if outside > 0 {
            items.push((
                Mark::Note,
                format!(
                    "{outside} {} outside the plotted area",
                    plural(outside, "position", "positions")
                ),
            ));
        }
        if unusable > 0 {
            items.push((
                Mark::Note,
                format!(
                    "{unusable} {} with unusable coordinates left out",
                    plural(unusable, "entry", "entries")
                ),
            ));
        }
        if fed_xy.is_empty() {
            items.push((
                Mark::Note,
                "no usable fed route: area chosen around the received positions".into(),
            ));
        }
        let legend_y = (h as i32 - legend_h_guess).max(0);
        legend(root, &items, (12, legend_y), w as i32 - 24, true)?;
        Ok(c)
    })
}

// ---------------------------------------------------------------------------------------
// Latency

fn fmt_seconds(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0} s")
    } else if a >= 10.0 {
        format!("{v:.1} s")
    } else {
        format!("{v:.2} s")
    }
}

/// Draws alarm latencies as a dot plot: one row per alarm kind (in order of first
/// appearance, at most [`MAX_KINDS`]), one dot per sample, spread a little vertically
/// so equal values stay visible, and each distinct limit of the kind as a vertical red
/// mark labelled with its value (at most 8 per kind; non-finite or negative limits are
/// ignored). The x axis is "seconds (device time)" from min(0, smallest value) to the
/// largest value or limit.
///
/// A `value_s` of +inf means "no alarm arrived within the limit": it is drawn as a
/// triangle at the right edge of its row and counted in the legend. NaN, −inf and finite
/// values beyond ±[`MAX_LATENCY_S`] are skipped and counted. With no samples the result
/// is a small plot saying "no latency measurements" (not an error).
pub fn latency_svg(samples: &[LatencySample]) -> Result<Plot, PlotError> {
    let title = "Alarm latency";
    if samples.is_empty() {
        return message_plot(title, "no latency measurements", 0);
    }
    struct Row {
        name: String,
        values: Vec<f64>,
        infinite: usize,
        limits: Vec<f64>,
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut skipped = 0usize;
    for s in samples {
        let ok_value = s.value_s == f64::INFINITY
            || (s.value_s.is_finite() && s.value_s.abs() <= MAX_LATENCY_S);
        if !ok_value {
            skipped += 1;
            continue;
        }
        let r = match index.get(s.kind.as_str()) {
            Some(&r) => r,
            None if rows.len() < MAX_KINDS => {
                let name = if s.kind.trim().is_empty() {
                    "(unnamed)".to_string()
                } else {
                    clean_text(&s.kind, 40)
                };
                rows.push(Row {
                    name,
                    values: Vec::new(),
                    infinite: 0,
                    limits: Vec::new(),
                });
                index.insert(s.kind.as_str(), rows.len() - 1);
                rows.len() - 1
            }
            None => {
                skipped += 1;
                continue;
            }
        };
        let row = &mut rows[r];
        if s.value_s.is_finite() {
            row.values.push(s.value_s);
        } else {
            row.infinite += 1;
        }
        if let Some(l) = s.limit_s {
            if l.is_finite()
                && (0.0..=MAX_LATENCY_S).contains(&l)
                && row.limits.len() < MAX_LIMITS_PER_KIND
                && !row.limits.contains(&l)
            {
                row.limits.push(l);
            }
        }
    }
    if rows.is_empty() {
        return message_plot(title, "no usable latency measurements", skipped);
    }

    let mut x_lo = 0.0f64;
    let mut x_hi = 0.0f64;
    for r in &rows {
        for &v in r.values.iter().chain(r.limits.iter()) {
            x_lo = x_lo.min(v);
            x_hi = x_hi.max(v);
        }
    }
    if x_hi - x_lo < 1e-3 {
        x_hi = x_lo + 1.0;
    }
    let pad = (x_hi - x_lo) * 0.08;
    let x_hi = x_hi + pad;
    let x_lo = if x_lo < 0.0 { x_lo - pad } else { x_lo };
    let k = rows.len();
    let n_inf: usize = rows.iter().map(|r| r.infinite).sum();

    // Left label area wide enough for the kind names (measured inside the render).
    let row_h = 46i32;
    let top = 34i32;
    let plot_h = row_h * k as i32;
    let legend_h = 2 * LEGEND_LINE_H + 6;
    let height = (top + 10 + plot_h + 50 + legend_h + 10) as u32;

    render((900, height), move |root| {
        let (w, _) = root.dim_in_pixel();
        let area = root.titled(title, font(16.0)).map_err(perr)?;
        let (_, ah) = area.dim_in_pixel();
        let (chart_area, _) = area.split_vertically(ah as i32 - legend_h - 6);
        let label_style = font_at(13.0, &INK, HPos::Right, VPos::Center);
        let mut label_w = 60u32;
        for r in &rows {
            let text = format!("{} ({})", r.name, r.values.len() + r.infinite);
            let (tw, _) = chart_area
                .estimate_text_size(&text, &label_style)
                .map_err(perr)?;
            label_w = label_w.max(tw + 16);
        }
        let label_w = label_w.min(300);
        let yr = -0.5..(k as f64 - 0.5);
        let mut chart = chart_on(&chart_area, x_lo..x_hi, yr, label_w, 45)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(10)
            .x_desc("seconds (device time)")
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .bold_line_style(GRID_BOLD.stroke_width(1))
            .light_line_style(GRID_LIGHT.stroke_width(1))
            .draw()
            .map_err(perr)?;
        let (px0, _, px1, _) = plot_rect(&chart);

        let mut c = Counts {
            skipped,
            ..Counts::default()
        };
        for (ri, r) in rows.iter().enumerate() {
            let yc = (k - 1 - ri) as f64;
            // Row label and separator.
            let (_, py) = chart.backend_coord(&(x_lo, yc));
            let text = format!("{} ({})", r.name, r.values.len() + r.infinite);
            root.draw_text(&text, &label_style, (px0 - 8, py))
                .map_err(perr)?;
            if ri > 0 {
                let (_, sep) = chart.backend_coord(&(x_lo, yc + 0.5));
                root.draw(&PathElement::new(
                    vec![(px0, sep), (px1, sep)],
                    GRID_BOLD.stroke_width(1),
                ))
                .map_err(perr)?;
            }
            // Limits.
            for &l in &r.limits {
                let (lx, ly0) = chart.backend_coord(&(l, yc + 0.42));
                let (_, ly1) = chart.backend_coord(&(l, yc - 0.42));
                root.draw(&PathElement::new(
                    vec![(lx, ly0), (lx, ly1)],
                    C_VERMILLION.stroke_width(2),
                ))
                .map_err(perr)?;
                root.draw_text(
                    &format!("limit {}", fmt_seconds(l)),
                    &font_at(11.0, &C_VERMILLION, HPos::Left, VPos::Top),
                    (lx + 4, ly0 + 1),
                )
                .map_err(perr)?;
                c.marks += 1;
            }
            // Samples, spread over ±0.25 of the row by a low-discrepancy sequence.
            let jitter = |i: usize| ((i as f64 * 0.618_033_988_75).fract() - 0.5) * 0.5;
            let pts = r
                .values
                .iter()
                .enumerate()
                .map(|(i, &v)| chart.backend_coord(&(v, yc + jitter(i))));
            let merged = merge_pixels(pts);
            let (kept, dropped) = thin(&merged, MAX_MARKS);
            c.thinned += dropped;
            c.drawn += kept.iter().map(|p| p.1).sum::<usize>();
            c.marks += kept.len();
            for (p, _) in kept {
                root.draw(&Circle::new(p, 4, C_BLUE.mix(0.85).filled()))
                    .map_err(perr)?;
            }
            // "No alarm" markers at the right edge.
            let mut inf_px: Vec<((i32, i32), usize)> = Vec::new();
            for i in 0..r.infinite {
                let (_, py) = chart.backend_coord(&(x_hi, yc + jitter(r.values.len() + i)));
                inf_px.push(((px1 - 8, py), 1));
            }
            let merged = merge_pixels(inf_px.iter().map(|p| p.0));
            let (kept, dropped) = thin(&merged, MAX_MARKS);
            c.thinned += dropped;
            c.drawn += kept.iter().map(|p| p.1).sum::<usize>();
            c.marks += kept.len();
            for ((x, y), _) in kept {
                root.draw(&Polygon::new(
                    vec![(x - 5, y - 6), (x + 6, y), (x - 5, y + 6)],
                    INK.filled(),
                ))
                .map_err(perr)?;
            }
        }

        let mut items = vec![
            (Mark::Dot(C_BLUE), "measured latency".to_string()),
            (Mark::Tick(C_VERMILLION), "limit".to_string()),
            (
                Mark::Triangle(INK),
                format!("no alarm within the limit ({n_inf})"),
            ),
        ];
        if skipped > 0 {
            items.push((
                Mark::Note,
                format!(
                    "{skipped} {} left out (not a number, out of range or too many kinds)",
                    plural(skipped, "sample", "samples")
                ),
            ));
        }
        let (_, h) = root.dim_in_pixel();
        legend(
            root,
            &items,
            (12, h as i32 - legend_h - 4),
            w as i32 - 24,
            true,
        )?;
        Ok(c)
    })
}

// ---------------------------------------------------------------------------------------
// Timeline

fn verdict_colour(verdict: &str) -> (RGBColor, f64, &'static str) {
    match verdict.trim().to_ascii_lowercase().as_str() {
        "pass" | "passed" => (C_GREEN, 0.16, "pass"),
        "fail" | "failed" => (C_VERMILLION, 0.18, "fail"),
        "inconclusive" => (C_AMBER, 0.22, "inconclusive"),
        _ => (C_GREY, 0.18, "other verdict"),
    }
}

/// Tick label for device time `t`, with `decimals` digits (exponent form for huge values).
fn fmt_time(t: f64, decimals: usize) -> String {
    if t.abs() >= 1e9 {
        format!("{t:.3e}")
    } else {
        format!("{t:.decimals$}")
    }
}

/// Draws rig events in lanes over device time.
///
/// The x axis is device time in seconds from `t0_s` to `t1_s`; it is an error if either
/// is not finite, if `t1_s - t0_s` is not finite, or if `t1_s` is not at least 1 µs after
/// `t0_s`. One lane per entry of `lanes`, top to bottom in that order (at most
/// [`MAX_LANES`]; an event goes to the first lane of its name). With no lanes only the
/// spans are drawn.
///
/// Instants are short vertical ticks in the upper half of their lane, intervals are
/// bars in the lower half, so neither hides the other. Events whose lane is not drawn,
/// whose time is NaN or not finite, whose end is before their start, or which lie
/// entirely outside [t0, t1] are skipped and counted; intervals reaching past the range
/// (an end of +inf means "still running") are clipped. Each lane is divided into bins of
/// [`TIMELINE_BIN_PX`] pixels and runs of busy bins are drawn as one mark, so a lane has
/// at most one tick and one bar per bin whatever the number of events; every event that
/// falls into a drawn bin counts as drawn. Labels are drawn next to marks only in lanes
/// with at most 12 events.
///
/// Spans are light bands behind the lanes (pass green, fail red, inconclusive amber,
/// others grey) with their label at the top when it fits; invalid or out-of-range spans
/// are skipped and counted, at most [`MAX_SPANS`] drawn. The counts in [`Plot`] cover
/// events and spans together. The plot is 1000 px wide and grows by 24 px per lane.
pub fn timeline_svg(
    t0_s: f64,
    t1_s: f64,
    lanes: &[&str],
    events: &[TimelineEvent],
    spans: &[Span],
) -> Result<Plot, PlotError> {
    let span = t1_s - t0_s;
    if !t0_s.is_finite() || !t1_s.is_finite() || !span.is_finite() {
        return Err(PlotError(format!(
            "time range {t0_s}..{t1_s} is not finite"
        )));
    }
    if span < 1e-6 {
        return Err(PlotError(format!(
            "time range {t0_s}..{t1_s} is shorter than a microsecond"
        )));
    }
    let drawn_lanes: Vec<String> = lanes
        .iter()
        .take(MAX_LANES)
        .map(|l| clean_text(l, 40))
        .collect();
    let mut lane_index: HashMap<&str, usize> = HashMap::new();
    for (i, l) in lanes.iter().take(MAX_LANES).enumerate() {
        lane_index.entry(*l).or_insert(i);
    }
    let n_rows = drawn_lanes.len().max(1);
    let lane_h = 24i32;
    let header_h = 30i32;
    let legend_h = 2 * LEGEND_LINE_H + 6;
    // A strip at the top of the plotting area holds the span labels.
    let band_label_h = 16i32;
    let height =
        (header_h + 10 + band_label_h + lane_h * n_rows as i32 + 50 + legend_h + 10) as u32;
    // Tick label precision from the span.
    let decimals = (2.0 - span.log10().floor()).clamp(0.0, 6.0) as usize;

    render((1000, height), move |root| {
        let (w, h) = root.dim_in_pixel();
        let (head, rest) = root.split_vertically(header_h);
        let (chart_area, _) = rest.split_vertically(h as i32 - header_h - legend_h - 6);
        let lane_style = font_at(12.0, &INK, HPos::Right, VPos::Center);
        let mut label_w = 60u32;
        for l in &drawn_lanes {
            let (tw, _) = chart_area
                .estimate_text_size(l, &lane_style)
                .map_err(perr)?;
            label_w = label_w.max(tw + 14);
        }
        let label_w = label_w.min(260);
        let formatter = move |v: &f64| fmt_time(t0_s + v, decimals);
        let mut chart = chart_on(&chart_area, 0.0..span, 0.0..n_rows as f64, label_w, 45)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(12)
            .x_label_formatter(&formatter)
            .x_desc("seconds (device time)")
            .label_style(font(12.0))
            .axis_desc_style(font(13.0))
            .bold_line_style(GRID_BOLD.stroke_width(1))
            .light_line_style(GRID_LIGHT.stroke_width(1))
            .draw()
            .map_err(perr)?;
        let (px0, py0, px1, py1) = plot_rect(&chart);
        let pw = px1 - px0;
        let n_bins = ((pw + TIMELINE_BIN_PX - 1) / TIMELINE_BIN_PX).max(1) as usize;
        let col = |t: f64| -> usize {
            let f = ((t - t0_s) / span * f64::from(pw)).floor();
            (f.clamp(0.0, f64::from(pw - 1)) as i32 / TIMELINE_BIN_PX) as usize
        };
        let bin_x = |b: usize| px0 + (b as i32) * TIMELINE_BIN_PX;
        let mut c = Counts::default();

        // Spans behind everything.
        let mut seen: HashSet<(usize, usize, &'static str)> = HashSet::new();
        let mut verdicts_present: Vec<(RGBColor, f64, &'static str)> = Vec::new();
        let mut span_marks: Vec<(usize, usize, RGBColor, f64, &str)> = Vec::new();
        for s in spans {
            let ok = s.start_s.is_finite() && !s.end_s.is_nan() && s.end_s >= s.start_s;
            if !ok || s.end_s < t0_s || s.start_s > t1_s {
                c.skipped += 1;
                continue;
            }
            let (a, b) = (col(s.start_s.max(t0_s)), col(s.end_s.min(t1_s)));
            let (colour, alpha, name) = verdict_colour(&s.verdict);
            if !verdicts_present.iter().any(|v| v.2 == name) {
                verdicts_present.push((colour, alpha, name));
            }
            if seen.insert((a, b, name)) {
                if span_marks.len() < MAX_SPANS {
                    span_marks.push((a, b, colour, alpha, s.label.as_str()));
                    c.drawn += 1;
                } else {
                    c.thinned += 1;
                }
            } else {
                c.drawn += 1;
            }
        }
        let span_label_style = font_at(11.0, &MUTED, HPos::Left, VPos::Top);
        for &(a, b, colour, alpha, label) in &span_marks {
            let (x0, x1) = (bin_x(a), (bin_x(b + 1)).min(px1));
            root.draw(&Rectangle::new(
                [(x0, py0), (x1, py1)],
                colour.mix(alpha).filled(),
            ))
            .map_err(perr)?;
            c.marks += 1;
            let label = clean_text(label, 40);
            if !label.is_empty() {
                let (tw, _) = root
                    .estimate_text_size(&label, &span_label_style)
                    .map_err(perr)?;
                if (tw as i32) + 6 <= x1 - x0 {
                    root.draw_text(&label, &span_label_style, (x0 + 3, py0 + 2))
                        .map_err(perr)?;
                }
            }
        }

        // Events, binned per lane.
        let n_lanes = drawn_lanes.len();
        let mut ticks = vec![vec![false; n_bins]; n_lanes];
        let mut cover = vec![vec![0i64; n_bins + 1]; n_lanes];
        let mut per_lane = vec![0usize; n_lanes];
        let mut labels: Vec<Vec<(usize, bool, &str)>> = vec![Vec::new(); n_lanes];
        let mut events_drawn = 0usize;
        for e in events {
            let Some(&lane) = lane_index.get(e.lane.as_str()) else {
                c.skipped += 1;
                continue;
            };
            if !e.t_s.is_finite() {
                c.skipped += 1;
                continue;
            }
            match e.end_s {
                None => {
                    if e.t_s < t0_s || e.t_s > t1_s {
                        c.skipped += 1;
                        continue;
                    }
                    let b = col(e.t_s);
                    ticks[lane][b] = true;
                    if labels[lane].len() <= 12 {
                        labels[lane].push((b, false, e.label.as_str()));
                    }
                }
                Some(end) => {
                    if end.is_nan() || end < e.t_s || end < t0_s || e.t_s > t1_s {
                        c.skipped += 1;
                        continue;
                    }
                    let (a, b) = (col(e.t_s.max(t0_s)), col(end.min(t1_s)));
                    cover[lane][a] += 1;
                    cover[lane][b + 1] -= 1;
                    if labels[lane].len() <= 12 {
                        labels[lane].push((a, true, e.label.as_str()));
                    }
                }
            }
            per_lane[lane] += 1;
            events_drawn += 1;
            c.drawn += 1;
        }

        let lane_top =
            |i: usize| py0 + band_label_h + (i as i32) * (py1 - py0 - band_label_h) / n_rows as i32;
        let lane_mid = |i: usize| (lane_top(i) + lane_top(i + 1)) / 2;
        let event_label_style = font_at(10.0, &INK, HPos::Left, VPos::Center);
        for (i, name) in drawn_lanes.iter().enumerate() {
            let yc = lane_mid(i);
            root.draw_text(name, &lane_style, (px0 - 8, yc))
                .map_err(perr)?;
            if i > 0 {
                let y = lane_top(i);
                root.draw(&PathElement::new(
                    vec![(px0, y), (px1, y)],
                    GRID_LIGHT.stroke_width(1),
                ))
                .map_err(perr)?;
            }
            // Interval bars: runs of bins covered by at least one interval.
            let covered = cover[i].iter().scan(0i64, |depth, d| {
                *depth += d;
                Some(*depth > 0)
            });
            // Instant ticks: runs of bins holding at least one instant.
            let bar_runs = busy_runs(covered.take(n_bins));
            let tick_runs = busy_runs(ticks[i].iter().copied());
            for (runs, (top, bottom), colour) in [
                (bar_runs, (yc + 1, yc + 9), C_SKY),
                (tick_runs, (yc - 9, yc), C_BLUE),
            ] {
                for (a, b) in runs {
                    let x1 = bin_x(b).min(px1).max(bin_x(a) + 1);
                    root.draw(&Rectangle::new(
                        [(bin_x(a), top), (x1, bottom)],
                        colour.filled(),
                    ))
                    .map_err(perr)?;
                    c.marks += 1;
                }
            }
            if per_lane[i] <= 12 {
                for &(b, _interval, label) in &labels[i] {
                    let label = clean_text(label, 24);
                    if !label.is_empty() {
                        root.draw_text(&label, &event_label_style, (bin_x(b) + 5, yc))
                            .map_err(perr)?;
                    }
                }
            }
        }

        // Header and legend.
        let mut header = format!("{events_drawn} events in {n_lanes} lanes");
        if lanes.len() > MAX_LANES {
            header.push_str(&format!(
                " (first {MAX_LANES} of {} lanes drawn)",
                lanes.len()
            ));
        }
        if n_lanes == 0 {
            header = "no lanes".to_string();
        }
        head.draw_text(
            &header,
            &font_at(13.0, &INK, HPos::Left, VPos::Center),
            (14, header_h / 2),
        )
        .map_err(perr)?;
        let mut items = vec![
            (Mark::Tick(C_BLUE), "instant".to_string()),
            (Mark::Bar(C_SKY), "interval".to_string()),
        ];
        for (colour, alpha, name) in &verdicts_present {
            items.push((Mark::Band(*colour, *alpha), format!("scenario: {name}")));
        }
        if c.skipped > 0 {
            items.push((
                Mark::Note,
                format!(
                    "{} {} left out (outside the time range, unknown lane or invalid)",
                    c.skipped,
                    plural(c.skipped, "event or span", "events or spans")
                ),
            ));
        }
        legend(
            root,
            &items,
            (12, h as i32 - legend_h - 4),
            w as i32 - 24,
            true,
        )?;
        Ok(c)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the document is a balanced tree of elements starting with `<svg` and
    /// ending with `</svg>`, with no raw `<` in text. Returns the element count.
    fn well_formed(svg: &str) -> usize {
        let s = svg.trim_end();
        assert!(
            s.starts_with("<svg"),
            "starts with {:?}",
            &s[..s.len().min(40)]
        );
        assert!(s.ends_with("</svg>"));
        let mut stack: Vec<&str> = Vec::new();
        let mut count = 0;
        let mut rest = s;
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').expect("unterminated tag") + open;
            let tag = &rest[open + 1..close];
            assert!(!tag.contains('<'), "'<' inside a tag: {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
            } else {
                let name = tag
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('/');
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric()),
                    "odd tag {name:?}"
                );
                count += 1;
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            rest = &rest[close + 1..];
        }
        assert!(stack.is_empty(), "unclosed: {stack:?}");
        count
    }

    /// The start tags of `name` elements.
    fn elements<'a>(svg: &'a str, name: &str) -> Vec<&'a str> {
        let pat = format!("<{name} ");
        svg.match_indices(&pat)
            .map(|(i, _)| {
                let end = svg[i..].find('>').map(|e| i + e).unwrap_or(svg.len());
                &svg[i..end]
            })
            .collect()
    }

    fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
        let pat = format!(" {name}=\"");
        let i = tag.find(&pat)? + pat.len();
        let j = tag[i..].find('"')? + i;
        Some(&tag[i..j])
    }

    fn svg_width(svg: &str) -> f64 {
        attr(elements(svg, "svg")[0], "width")
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Points of the route polyline (the one in the route colour).
    fn route_points(svg: &str) -> Vec<(i32, i32)> {
        let lines: Vec<_> = elements(svg, "polyline")
            .into_iter()
            .filter(|t| attr(t, "stroke") == Some("#0072B2"))
            .collect();
        assert_eq!(lines.len(), 2, "route line plus legend line: {lines:?}");
        // The legend line has 2 points and is drawn last.
        attr(lines[0], "points")
            .unwrap()
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }

    /// Circles of radius 3 (data markers; legend markers have radius 4).
    fn data_circles<'a>(svg: &'a str, fill: &str) -> Vec<&'a str> {
        elements(svg, "circle")
            .into_iter()
            .filter(|t| attr(t, "r") == Some("3") && attr(t, "fill") == Some(fill))
            .collect()
    }

    fn berlin(i: usize, n: usize) -> TrackPoint {
        // An east-west line of ~2 km through Berlin, with a small north-south wiggle.
        let f = i as f64 / (n.max(2) - 1) as f64;
        TrackPoint {
            // Walked in ten minutes.
            t_s: f * 600.0,
            lat: 52.52 + 0.002 * (f * 6.0).sin(),
            lon: 13.38 + 0.03 * f,
        }
    }

    /// The route line's colour as the SVG backend writes it.
    const ROUTE_HEX: &str = "#0072B2";

    #[test]
    fn a_jump_in_the_fed_position_cuts_the_route_line() {
        // Two walks 2 km apart, one second between them: two lines, not one.
        let mut fed = Vec::new();
        for i in 0..20 {
            fed.push(TrackPoint {
                t_s: i as f64,
                lat: 52.5,
                lon: 13.4 + i as f64 * 0.00002,
            });
        }
        for i in 0..20 {
            fed.push(TrackPoint {
                t_s: 20.0 + i as f64,
                lat: 52.52,
                lon: 13.4 + i as f64 * 0.00002,
            });
        }
        let p = route_svg("jump", &fed, &[]).unwrap();
        let route = |svg: &str| {
            svg.lines()
                .filter(|l| {
                    l.starts_with("<polyline") && l.contains(&format!("stroke=\"{ROUTE_HEX}\""))
                })
                .count()
        };
        // Two pieces, plus the legend's sample line.
        assert_eq!(route(&p.svg), 3, "{}", p.svg);
        // The same points walked slowly (a minute apart) are one line.
        for (i, f) in fed.iter_mut().enumerate() {
            f.t_s = i as f64 * 60.0;
        }
        let p = route_svg("walk", &fed, &[]).unwrap();
        assert_eq!(route(&p.svg), 2, "{}", p.svg);
    }

    #[test]
    fn route_counts_three_fed_two_received() {
        let fed: Vec<_> = (0..3).map(|i| berlin(i, 3)).collect();
        let received = [
            ReceivedPoint {
                t_s: 1.0,
                lat: 52.5205,
                lon: 13.39,
                valid: true,
            },
            ReceivedPoint {
                t_s: 2.0,
                lat: 52.5195,
                lon: 13.40,
                valid: false,
            },
        ];
        let p = route_svg("Route", &fed, &received).unwrap();
        well_formed(&p.svg);
        assert_eq!((p.drawn, p.skipped, p.thinned, p.marks), (5, 0, 0, 5));
        assert_eq!(route_points(&p.svg).len(), 3);
        assert_eq!(data_circles(&p.svg, "#D55E00").len(), 1, "valid fix filled");
        assert_eq!(data_circles(&p.svg, "none").len(), 1, "no-fix hollow");
        assert!(p.svg.contains("east (m)") && p.svg.contains("north (m)"));
        assert!(p.svg.contains("valid fix (1)"));
        assert!(!p.svg.contains("outside the plotted area"));
    }

    #[test]
    fn far_away_position_does_not_squash_the_route() {
        let fed: Vec<_> = (0..50).map(|i| berlin(i, 50)).collect();
        let received = [
            ReceivedPoint {
                t_s: 1.0,
                lat: 52.52,
                lon: 13.39,
                valid: true,
            },
            ReceivedPoint {
                t_s: 2.0,
                lat: 0.0,
                lon: 0.0,
                valid: true,
            },
        ];
        let p = route_svg("Route", &fed, &received).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.skipped, 1);
        assert_eq!(p.drawn, 51);
        assert!(p.svg.contains("1 position outside the plotted area"));
        let pts = route_points(&p.svg);
        let (lo, hi) = pts
            .iter()
            .fold((i32::MAX, i32::MIN), |(l, h), p| (l.min(p.0), h.max(p.0)));
        let extent = f64::from(hi - lo);
        assert!(
            extent > 0.5 * svg_width(&p.svg),
            "route spans only {extent} px"
        );
    }

    #[test]
    fn route_axes_have_equal_scale() {
        // A square of about 1 km x 1 km: its pixel width and height must match.
        let lat0: f64 = 48.0;
        let dlat = 1000.0 / EARTH_RADIUS_M * 180.0 / std::f64::consts::PI;
        let dlon = dlat / lat0.to_radians().cos();
        let corners = [
            (0.0, 0.0),
            (0.0, dlon),
            (dlat, dlon),
            (dlat, 0.0),
            (0.0, 0.0),
        ];
        let fed: Vec<_> = corners
            .iter()
            .map(|&(a, o)| TrackPoint {
                t_s: 0.0,
                lat: lat0 + a,
                lon: 11.0 + o,
            })
            .collect();
        let p = route_svg("Square", &fed, &[]).unwrap();
        let pts = route_points(&p.svg);
        let xs: Vec<i32> = pts.iter().map(|p| p.0).collect();
        let ys: Vec<i32> = pts.iter().map(|p| p.1).collect();
        let w = xs.iter().max().unwrap() - xs.iter().min().unwrap();
        let h = ys.iter().max().unwrap() - ys.iter().min().unwrap();
        assert!(w > 100, "square too small: {w} px");
        assert!((w - h).abs() <= 2, "width {w} px vs height {h} px");
    }

    #[test]
    fn route_non_finite_inputs_are_skipped() {
        let mut fed: Vec<_> = (0..10).map(|i| berlin(i, 10)).collect();
        fed.push(TrackPoint {
            t_s: 0.0,
            lat: f64::NAN,
            lon: 13.0,
        });
        fed.push(TrackPoint {
            t_s: 0.0,
            lat: 52.0,
            lon: f64::INFINITY,
        });
        fed.push(TrackPoint {
            t_s: 0.0,
            lat: 1e308,
            lon: 13.0,
        });
        let received = [
            ReceivedPoint {
                t_s: 0.0,
                lat: f64::NEG_INFINITY,
                lon: 0.0,
                valid: true,
            },
            ReceivedPoint {
                t_s: f64::NAN,
                lat: 52.52,
                lon: 13.39,
                valid: false,
            },
        ];
        let p = route_svg("Route", &fed, &received).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.skipped, 4);
        assert_eq!(p.drawn, 11);
        assert!(p
            .svg
            .contains("4 entries with unusable coordinates left out"));
    }

    #[test]
    fn route_empty_and_received_only() {
        let p = route_svg("Nothing", &[], &[]).unwrap();
        well_formed(&p.svg);
        assert!(p.svg.contains("no positions"));
        assert_eq!((p.drawn, p.skipped), (0, 0));
        let bad = [ReceivedPoint {
            t_s: 0.0,
            lat: f64::NAN,
            lon: 0.0,
            valid: true,
        }];
        let p = route_svg("Nothing usable", &[], &bad).unwrap();
        assert!(p.svg.contains("no positions"));
        assert_eq!(p.skipped, 1);

        let received: Vec<_> = (0..5)
            .map(|i| ReceivedPoint {
                t_s: 0.0,
                lat: 52.5 + 0.001 * i as f64,
                lon: 13.4,
                valid: true,
            })
            .collect();
        let p = route_svg("Received only", &[], &received).unwrap();
        well_formed(&p.svg);
        assert_eq!((p.drawn, p.skipped), (5, 0));
        assert_eq!(data_circles(&p.svg, "#D55E00").len(), 5);
    }

    #[test]
    fn route_with_a_million_points_is_bounded() {
        let n = 1_000_000;
        let fed: Vec<_> = (0..n).map(|i| berlin(i, n)).collect();
        let received: Vec<_> = (0..200_000)
            .map(|i| ReceivedPoint {
                t_s: 0.0,
                lat: 52.515 + (i % 997) as f64 * 1e-5,
                lon: 13.38 + (i % 991) as f64 * 3e-5,
                valid: i % 3 != 0,
            })
            .collect();
        let p = route_svg("Flood", &fed, &received).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.drawn + p.thinned + p.skipped, n + received.len());
        assert!(route_points(&p.svg).len() <= MAX_MARKS);
        assert!(p.marks <= 3 * MAX_MARKS);
        assert!(p.svg.len() < 1_000_000, "{} bytes", p.svg.len());
    }

    #[test]
    fn text_is_escaped_and_cleaned() {
        let fed: Vec<_> = (0..3).map(|i| berlin(i, 3)).collect();
        let p = route_svg("<script>alert(1)</script> & \u{202E}x\u{0}", &fed, &[]).unwrap();
        well_formed(&p.svg);
        assert!(!p.svg.contains("<script"));
        assert!(p
            .svg
            .contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp;"));
        assert!(!p.svg.contains('\u{202E}') && !p.svg.contains('\u{0}'));

        let ev = [TimelineEvent {
            t_s: 1.0,
            end_s: None,
            lane: "<b>".into(),
            label: "<script>x</script>".into(),
        }];
        let p = timeline_svg(0.0, 10.0, &["<b>"], &ev, &[]).unwrap();
        well_formed(&p.svg);
        assert!(!p.svg.contains("<script") && !p.svg.contains("<b>"));
        assert!(p.svg.contains("&lt;script&gt;x"));
    }

    fn sample(kind: &str, v: f64, limit: Option<f64>) -> LatencySample {
        LatencySample {
            kind: kind.into(),
            value_s: v,
            limit_s: limit,
            scenario: "s".into(),
        }
    }

    #[test]
    fn latency_rows_limits_and_infinite() {
        let samples = [
            sample("SOS alarm", 4.2, Some(10.0)),
            sample("SOS alarm", 5.0, Some(10.0)),
            sample("SOS alarm", f64::INFINITY, Some(10.0)),
            sample("geofence alarm", 30.0, Some(60.0)),
            sample("geofence alarm", 45.0, Some(90.0)),
            sample("geofence alarm", f64::NAN, Some(60.0)),
        ];
        let p = latency_svg(&samples).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.drawn, 5);
        assert_eq!(p.skipped, 1);
        assert!(p.svg.contains("no alarm within the limit (1)"));
        assert!(p.svg.contains("seconds (device time)"));
        for l in ["limit 10.0 s", "limit 60.0 s", "limit 90.0 s"] {
            assert!(p.svg.contains(l), "missing {l}");
        }
        // Three limit lines in the limit colour (the legend's is a rect).
        let limit_lines = elements(&p.svg, "polyline")
            .into_iter()
            .filter(|t| attr(t, "stroke") == Some("#D55E00"))
            .count();
        assert_eq!(limit_lines, 3);
        // One triangle in the plot plus one in the legend.
        assert_eq!(elements(&p.svg, "polygon").len(), 2);
        // The infinite sample sits at the right edge: right of every dot.
        let tri_x = attr(elements(&p.svg, "polygon")[0], "points")
            .unwrap()
            .split_whitespace()
            .map(|p| p.split_once(',').unwrap().0.parse::<i32>().unwrap())
            .max()
            .unwrap();
        let dots: Vec<i32> = elements(&p.svg, "circle")
            .iter()
            .filter(|t| attr(t, "r") == Some("4") && attr(t, "opacity") == Some("0.85"))
            .map(|t| attr(t, "cx").unwrap().parse().unwrap())
            .collect();
        assert_eq!(dots.len(), 4);
        assert!(dots.iter().all(|&x| x < tri_x));
        let sos = p.svg.find("SOS alarm (3)").unwrap();
        let geo = p.svg.find("geofence alarm (2)").unwrap();
        assert!(sos < geo);
    }

    #[test]
    fn latency_hostile_values() {
        let mut samples: Vec<_> = (0..100_000)
            .map(|i| sample("flood", (i % 50) as f64 * 0.1, None))
            .collect();
        samples.push(sample("flood", 1e308, Some(f64::NAN)));
        samples.push(sample("flood", f64::NEG_INFINITY, Some(-1.0)));
        for k in 0..100 {
            samples.push(sample(&format!("kind {k}"), 1.0, Some(1e300)));
        }
        let p = latency_svg(&samples).unwrap();
        well_formed(&p.svg);
        // 2 bad values, 61 kinds beyond the limit of 40 rows.
        assert_eq!(p.skipped, 2 + (101 - MAX_KINDS));
        assert_eq!(p.drawn + p.skipped + p.thinned, samples.len());
        assert!(p.svg.len() < 400_000, "{} bytes", p.svg.len());

        let p = latency_svg(&[]).unwrap();
        well_formed(&p.svg);
        assert!(p.svg.contains("no latency measurements"));
        let p = latency_svg(&[sample("x", f64::NAN, None)]).unwrap();
        assert_eq!(p.skipped, 1);
    }

    fn ev(t: f64, end: Option<f64>, lane: &str) -> TimelineEvent {
        TimelineEvent {
            t_s: t,
            end_s: end,
            lane: lane.into(),
            label: String::new(),
        }
    }

    #[test]
    fn timeline_lanes_order_and_counts() {
        let lanes = ["power", "console", "gateway", "gnss"];
        let events = [
            ev(1.0, Some(50.0), "power"),
            TimelineEvent {
                t_s: 2.0,
                end_s: None,
                lane: "console".into(),
                label: "boot".into(),
            },
            ev(3.0, Some(f64::INFINITY), "gateway"),
            ev(-5.0, None, "gnss"),
            ev(5.0, None, "nowhere"),
            ev(f64::NAN, None, "gnss"),
            ev(7.0, Some(6.0), "gnss"),
            ev(-10.0, Some(-1.0), "power"),
            ev(-10.0, Some(20.0), "power"),
        ];
        let spans = [
            Span {
                start_s: 0.0,
                end_s: 30.0,
                label: "SOS".into(),
                verdict: "pass".into(),
            },
            Span {
                start_s: 30.0,
                end_s: 60.0,
                label: "geofence".into(),
                verdict: "FAIL".into(),
            },
            Span {
                start_s: f64::NAN,
                end_s: 1.0,
                label: "bad".into(),
                verdict: "pass".into(),
            },
        ];
        let p = timeline_svg(0.0, 60.0, &lanes, &events, &spans).unwrap();
        well_formed(&p.svg);
        // Drawn: 4 events (power x2, console, gateway) + 2 spans.
        assert_eq!(p.drawn, 6);
        assert_eq!(p.skipped, 6);
        let pos: Vec<usize> = lanes
            .iter()
            .map(|l| {
                p.svg
                    .find(&format!(">\n{l}\n</text>"))
                    .unwrap_or_else(|| panic!("no lane {l}"))
            })
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
        assert!(p.svg.contains("\nboot\n"), "label drawn in a quiet lane");
        // The event label sits on its lane's row: same y as the lane name.
        let text_y = |needle: &str| {
            let i = p.svg.find(&format!(">\n{needle}\n</text>")).unwrap();
            let start = p.svg[..i].rfind("<text").unwrap();
            attr(&p.svg[start..i], "y").unwrap().to_string()
        };
        assert_eq!(text_y("boot"), text_y("console"));
        assert_ne!(text_y("boot"), text_y("power"));
        assert!(p.svg.contains("scenario: pass") && p.svg.contains("scenario: fail"));
        // The two bands: green and vermillion, full plot height.
        let bands = elements(&p.svg, "rect")
            .into_iter()
            .filter(|t| matches!(attr(t, "fill"), Some("#009E73") | Some("#D55E00")))
            .filter(|t| attr(t, "height").unwrap().parse::<i32>().unwrap() > 50)
            .count();
        assert_eq!(bands, 2);
    }

    #[test]
    fn timeline_million_events_bounded() {
        let n = 1_000_000;
        let mut events: Vec<_> = (0..n)
            .map(|i| ev(i as f64 * 3.6e-3, None, "gateway"))
            .collect();
        events.extend((0..1000).map(|i| ev(i as f64 * 3.6, Some(i as f64 * 3.6 + 1.0), "power")));
        let p = timeline_svg(0.0, 3600.0, &["power", "gateway"], &events, &[]).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.drawn, events.len());
        assert_eq!(p.skipped, 0);
        // 1000 px wide: at most 500 bins, one tick run and one bar run per bin and lane.
        assert!(p.marks <= 2 * 500, "{} marks", p.marks);
        assert!(p.svg.len() < 2_000_000, "{} bytes", p.svg.len());
    }

    #[test]
    fn timeline_bad_ranges_are_errors_and_no_lanes_is_a_plot() {
        for (a, b) in [
            (0.0, f64::NAN),
            (f64::NEG_INFINITY, 1.0),
            (5.0, 5.0),
            (10.0, 1.0),
            (-1e308, 1e308),
        ] {
            assert!(timeline_svg(a, b, &["x"], &[], &[]).is_err(), "{a}..{b}");
        }
        let p = timeline_svg(1e15, 1e15 + 1.0, &["x"], &[ev(1e15 + 0.5, None, "x")], &[]).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.drawn, 1);
        let p = timeline_svg(0.0, 1e300, &["x"], &[ev(1e299, Some(1e308), "x")], &[]).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.drawn, 1);
        let p = timeline_svg(0.0, 10.0, &[], &[ev(1.0, None, "x")], &[]).unwrap();
        well_formed(&p.svg);
        assert_eq!(p.skipped, 1);
        assert!(p.svg.contains("no lanes"));
    }

    /// Deterministic hostile values: every function returns without panicking, the
    /// counts add up, and the documents stay well-formed and small.
    #[test]
    fn hostile_value_mix() {
        let specials = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308,
            -1e308,
            f64::MIN_POSITIVE,
            5e-324,
            -0.0,
            0.0,
            90.0,
            -180.0,
            180.0,
            52.52,
            13.4,
            1e-9,
            3599.999,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            specials[(state % specials.len() as u64) as usize]
        };
        for round in 0..20 {
            let fed: Vec<_> = (0..50)
                .map(|_| TrackPoint {
                    t_s: next(),
                    lat: next(),
                    lon: next(),
                })
                .collect();
            let received: Vec<_> = (0..50)
                .map(|i| ReceivedPoint {
                    t_s: next(),
                    lat: next(),
                    lon: next(),
                    valid: i % 2 == 0,
                })
                .collect();
            let title = if round % 2 == 0 {
                ""
            } else {
                "\u{0}\u{FFFF}🛰"
            };
            let p = route_svg(title, &fed, &received).unwrap();
            well_formed(&p.svg);
            assert_eq!(p.drawn + p.skipped + p.thinned, 100);

            let samples: Vec<_> = (0..50)
                .map(|i| sample(&format!("k{}", i % 3), next(), Some(next())))
                .collect();
            let p = latency_svg(&samples).unwrap();
            well_formed(&p.svg);
            assert_eq!(p.drawn + p.skipped + p.thinned, 50);

            let events: Vec<_> = (0..50)
                .map(|i| {
                    ev(
                        next(),
                        if i % 2 == 0 { Some(next()) } else { None },
                        ["a", "b", "c"][i % 3],
                    )
                })
                .collect();
            let spans: Vec<_> = (0..10)
                .map(|_| Span {
                    start_s: next(),
                    end_s: next(),
                    label: "s".into(),
                    verdict: "pass".into(),
                })
                .collect();
            let (t0, t1) = (next(), next());
            match timeline_svg(t0, t1, &["a", "b"], &events, &spans) {
                Ok(p) => {
                    well_formed(&p.svg);
                    assert_eq!(p.drawn + p.skipped + p.thinned, 60);
                    assert!(p.svg.len() < 200_000);
                }
                Err(e) => assert!(
                    !(t0.is_finite() && t1.is_finite() && t1 - t0 >= 1e-6 && (t1 - t0).is_finite()),
                    "{e}"
                ),
            }
        }
    }

    #[test]
    fn error_displays() {
        let e = PlotError("x".into());
        assert_eq!(e.to_string(), "plot failed: x");
        let caught = render((10, 10), |_| panic!("boom"));
        assert!(matches!(caught, Err(PlotError(m)) if m.contains("boom")));
    }

    /// Sizes for a typical run; printed with `--nocapture`.
    #[test]
    fn typical_sizes() {
        let fed: Vec<_> = (0..3000).map(|i| berlin(i, 3000)).collect();
        let received: Vec<_> = (0..200)
            .map(|i| {
                let f = berlin(i * 15, 3000);
                ReceivedPoint {
                    t_s: f.t_s,
                    lat: f.lat + 2e-5,
                    lon: f.lon - 2e-5,
                    valid: i % 10 != 0,
                }
            })
            .collect();
        let route = route_svg("Route", &fed, &received).unwrap();
        let lanes: Vec<String> = (0..12).map(|i| format!("lane {i}")).collect();
        let lane_refs: Vec<&str> = lanes.iter().map(String::as_str).collect();
        let events: Vec<_> = (0..2000)
            .map(|i| {
                let t = (i * 7919 % 3600) as f64;
                ev(
                    t,
                    if i % 4 == 0 { Some(t + 20.0) } else { None },
                    lane_refs[i % 12],
                )
            })
            .collect();
        let spans: Vec<_> = (0..40)
            .map(|i| Span {
                start_s: i as f64 * 90.0,
                end_s: i as f64 * 90.0 + 80.0,
                label: format!("scenario {i}"),
                verdict: ["pass", "fail", "inconclusive"][i % 3].into(),
            })
            .collect();
        let timeline = timeline_svg(0.0, 3600.0, &lane_refs, &events, &spans).unwrap();
        let samples: Vec<_> = (0..30)
            .map(|i| {
                sample(
                    ["SOS alarm", "geofence alarm", "low battery"][i % 3],
                    2.0 + i as f64 * 0.3,
                    Some(15.0),
                )
            })
            .collect();
        let latency = latency_svg(&samples).unwrap();
        for (name, p) in [
            ("route", &route),
            ("timeline", &timeline),
            ("latency", &latency),
        ] {
            well_formed(&p.svg);
            println!("{name}: {} bytes, {} marks", p.svg.len(), p.marks);
        }
    }
}
