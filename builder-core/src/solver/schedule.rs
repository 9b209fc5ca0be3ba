//! Running the stages by step dependencies: a stage starts when the stage it is built
//! on (`FROM stage`) has ended, and each of its steps runs as soon as the stages it reads
//! (`COPY --from=stage`, `ADD --from`, `RUN --mount=from=stage`) have ended, not when a
//! whole level of stages has.
//!
//! The unit of work is a stage run ([`StageRun`]): it runs its steps in order and stops
//! before a step whose inputs are missing ([`Advance::Waiting`]); the run is parked and
//! put back in the ready queue when the last of them ends. A waiting step has not
//! started (no `StepStarted`) and holds no job: at most `jobs` workers run steps at once.
//! Ready work is taken in the order (level of the stage, stage id), so with one job the
//! stages run one after another in the order of their levels, as they always did, and
//! the events (step numbers included) stay the same.
//!
//! The first failure cancels the build's token: running steps are killed, other runs stop
//! before their next step, parked runs and stages not started are dropped, and the error
//! reported is the one that caused the cancellation.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rbuild_dockerfile::{Base, BuildGraph, EdgeKind, GraphStage, Source, StageId, StepId};

use super::error::BuildError;
use super::shared::Shared;
use super::stage::{Advance, StageRun};
use super::state::StageState;

/// How long an idle worker waits before looking at the cancel token again (the caller's
/// token is a flag, not a signal).
const IDLE_POLL: Duration = Duration::from_millis(50);

/// Runs every stage of the graph, at most `jobs` steps at once, putting each final state
/// in `shared.states`; the first failure cancels the rest and is the error.
pub(crate) fn run_stages(shared: &Shared<'_>) -> Result<(), BuildError> {
    let graph = &shared.prepared.graph;
    let deps = Dependencies::of(graph);
    let mut queue = Queue::default();
    for stage in &graph.stages {
        match &stage.base {
            Base::Stage(parent) => queue.unstarted.push((stage.id, *parent)),
            Base::Image(_) | Base::Scratch => {
                queue.ready.insert(deps.order(stage.id), Work::Start(stage));
            }
        }
    }
    let board = Board {
        queue: Mutex::new(queue),
        wake: Condvar::new(),
    };
    let workers = shared.request.options.jobs.max(1).min(graph.stages.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| work(shared, &deps, &board));
        }
    });
    let queue = board
        .queue
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    let unfinished =
        !(queue.parked.is_empty() && queue.unstarted.is_empty() && queue.ready.is_empty());
    let mut errors = queue.errors;
    if errors.is_empty() {
        // The lowering refuses cycles, so work is left only when the caller canceled
        // the build between two steps.
        debug_assert!(
            !unfinished || shared.runtime.cancel.is_cancelled(),
            "stages left waiting with no failure"
        );
        return if unfinished {
            Err(BuildError::Canceled)
        } else {
            Ok(())
        };
    }
    // The error that caused the cancellation, not the cancellations it caused.
    let first = errors
        .iter()
        .position(|e| !matches!(e, BuildError::Canceled))
        .unwrap_or(0);
    Err(errors.swap_remove(first))
}

/// What the scheduler knows of the graph: the stages each step reads, and the order
/// ready work is taken in.
struct Dependencies {
    /// The stages a step reads (`COPY --from`, `RUN --mount=from`), by step.
    inputs: HashMap<StepId, Vec<StageId>>,
    /// The level of each stage (a stage depends only on stages of lower levels).
    levels: HashMap<StageId, usize>,
}

impl Dependencies {
    fn of(graph: &BuildGraph) -> Self {
        let mut inputs: HashMap<StepId, Vec<StageId>> = HashMap::new();
        for edge in &graph.edges {
            if let (Some(step), Source::Stage(source), EdgeKind::CopyFrom | EdgeKind::MountFrom) =
                (edge.step, &edge.source, edge.kind)
            {
                inputs.entry(step).or_default().push(*source);
            }
        }
        let levels = graph
            .levels
            .iter()
            .enumerate()
            .flat_map(|(level, stages)| stages.iter().map(move |id| (*id, level)))
            .collect();
        Dependencies { inputs, levels }
    }

    /// The place of `stage`'s work in the ready queue.
    fn order(&self, stage: StageId) -> (usize, StageId) {
        (self.levels.get(&stage).copied().unwrap_or(0), stage)
    }

    /// The stages `step` reads that have not ended (have no state in `states`).
    fn missing(&self, step: StepId, states: &HashMap<StageId, StageState>) -> Vec<StageId> {
        self.inputs.get(&step).map_or_else(Vec::new, |sources| {
            sources
                .iter()
                .filter(|id| !states.contains_key(id))
                .copied()
                .collect()
        })
    }
}

/// Work ready to run.
enum Work<'s, 'a> {
    /// A stage whose base is ready: its run begins (with its `FROM` step).
    Start(&'s GraphStage),
    /// A run (of this stage) that waited for stages that have now ended.
    Resume(StageId, Box<StageRun<'s, 'a>>),
}

/// The workers' shared queue.
#[derive(Default)]
struct Queue<'s, 'a> {
    /// Work that may run now, taken lowest first.
    ready: BTreeMap<(usize, StageId), Work<'s, 'a>>,
    /// Runs (of these stages) whose next step needs stages that have not ended, and
    /// those stages.
    parked: Vec<(StageId, StageRun<'s, 'a>, Vec<StageId>)>,
    /// Stages built on a stage that has not ended: (stage, its base stage).
    unstarted: Vec<(StageId, StageId)>,
    /// How many workers are running a stage's steps.
    running: usize,
    /// The failures, in the order they happened.
    errors: Vec<BuildError>,
}

struct Board<'s, 'a> {
    queue: Mutex<Queue<'s, 'a>>,
    /// Signalled when work becomes ready, a stage fails or the workers should stop.
    wake: Condvar,
}

impl<'s, 'a> Board<'s, 'a> {
    fn lock(&self) -> MutexGuard<'_, Queue<'s, 'a>> {
        lock(&self.queue)
    }
}

/// One worker: takes ready work until there is none left or the build failed.
fn work<'s, 'a>(shared: &'s Shared<'a>, deps: &Dependencies, board: &Board<'s, 'a>) {
    let waits_for = |step: StepId| deps.missing(step, &lock(&shared.states));
    let mut queue = board.lock();
    loop {
        if !queue.errors.is_empty() || shared.runtime.cancel.is_cancelled() {
            break;
        }
        let Some((_, work)) = queue.ready.pop_first() else {
            if queue.running == 0 {
                // Nothing runs, so nothing will become ready: the others stop too.
                board.wake.notify_all();
                break;
            }
            queue = board
                .wake
                .wait_timeout(queue, IDLE_POLL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        };
        let id = match &work {
            Work::Start(stage) => stage.id,
            Work::Resume(id, _) => *id,
        };
        queue.running += 1;
        drop(queue);
        let unwinding = Unwinding { shared, board };
        let outcome = match work {
            Work::Start(stage) => StageRun::new(shared, stage).and_then(|run| run.run(&waits_for)),
            Work::Resume(_, run) => run.run(&waits_for),
        };
        drop(unwinding);
        queue = board.lock();
        queue.running -= 1;
        match outcome {
            Ok(Advance::Done(state)) => {
                ended(&mut queue, shared, deps, id, state);
                board.wake.notify_all();
            }
            Ok(Advance::Waiting(run, mut waiting)) => {
                // A stage may have ended since the run looked: look again under the
                // queue's lock, which every end holds, so that no wake-up is lost.
                waiting.retain(|stage| !lock(&shared.states).contains_key(stage));
                if waiting.is_empty() {
                    queue
                        .ready
                        .insert(deps.order(id), Work::Resume(id, Box::new(run)));
                } else {
                    queue.parked.push((id, run, waiting));
                }
            }
            Err(e) => {
                shared.runtime.cancel.cancel();
                queue.errors.push(e);
                board.wake.notify_all();
            }
        }
    }
}

/// Stage `id` ended with `state`: its state is kept for the stages that read it, and the
/// runs and stages that waited only for it become ready. Called with the queue locked.
fn ended<'s, 'a>(
    queue: &mut Queue<'s, 'a>,
    shared: &'s Shared<'a>,
    deps: &Dependencies,
    id: StageId,
    state: StageState,
) {
    lock(&shared.states).insert(id, state);
    for (_, _, waiting) in &mut queue.parked {
        waiting.retain(|stage| *stage != id);
    }
    let (resumed, parked): (Vec<_>, Vec<_>) = std::mem::take(&mut queue.parked)
        .into_iter()
        .partition(|(_, _, waiting)| waiting.is_empty());
    queue.parked = parked;
    for (stage, run, _) in resumed {
        queue
            .ready
            .insert(deps.order(stage), Work::Resume(stage, Box::new(run)));
    }
    let (started, unstarted): (Vec<_>, Vec<_>) = std::mem::take(&mut queue.unstarted)
        .into_iter()
        .partition(|(_, base)| *base == id);
    queue.unstarted = unstarted;
    for (stage, _) in started {
        if let Some(stage) = shared.prepared.graph.stage(stage) {
            queue.ready.insert(deps.order(stage.id), Work::Start(stage));
        }
    }
}

/// Stops the build if a stage run panics, so that the other workers end (and the panic
/// reaches the caller when the scope joins) instead of waiting for the run forever.
struct Unwinding<'b, 's, 'a> {
    shared: &'s Shared<'a>,
    board: &'b Board<'s, 'a>,
}

impl Drop for Unwinding<'_, '_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.runtime.cancel.cancel();
            let mut queue = self.board.lock();
            queue.running -= 1;
            queue.errors.push(BuildError::Canceled);
            self.board.wake.notify_all();
        }
    }
}

/// `mutex` locked, even if a thread panicked holding it (what it guards stays whole:
/// every change to it is one insert or one push).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
