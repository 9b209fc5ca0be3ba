//! `ONBUILD` triggers: those of a stage's base (image or stage) put in front of its
//! instructions.

use std::collections::HashMap;

use rbuild_dockerfile::{Base, BuildGraph, GraphStage, Instruction, Platform, StageId};

use super::base::{BaseImage, BaseKey};
use crate::solver::error::{BuildError, Location};
use crate::solver::semantics;

/// The `ONBUILD` triggers each stage inherits, parsed and put in front of its
/// instructions; returns their texts by stage. A stage built on an image runs the
/// image's `OnBuild`; one built on another stage runs that stage's `ONBUILD`
/// instructions (BuildKit runs a stage's triggers when it is used as a base, too).
pub(crate) fn insert_triggers(
    file: &mut rbuild_dockerfile::Dockerfile,
    first: &BuildGraph,
    bases: &HashMap<BaseKey, BaseImage>,
    target: Option<&Platform>,
    file_name: &str,
    text: &str,
) -> Result<HashMap<StageId, Vec<String>>, BuildError> {
    // Every list first, from the file as written: inserting changes the instructions.
    let mut wanted: Vec<(&GraphStage, Vec<String>, String)> = Vec::new();
    for stage in &first.stages {
        let (texts, from) = match &stage.base {
            Base::Scratch => continue,
            Base::Image(reference) => match bases.get(&BaseKey {
                reference: reference.clone(),
                platform: super::stage_platform(stage, target),
            }) {
                Some(base) => (
                    semantics::onbuild_triggers(&base.image.config),
                    reference.clone(),
                ),
                None => continue,
            },
            Base::Stage(parent) => {
                let declared = file
                    .stages
                    .get(parent.0 as usize)
                    .map(|p| {
                        p.instructions
                            .iter()
                            .filter_map(|i| match i {
                                Instruction::Onbuild(o) => Some(o.expression.clone()),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (declared, format!("stage {parent}"))
            }
        };
        if !texts.is_empty() {
            wanted.push((stage, texts, from));
        }
    }
    let mut triggers = HashMap::new();
    for (stage, texts, from) in wanted {
        let mut instructions = Vec::new();
        for trigger in &texts {
            let parsed = rbuild_dockerfile::parse(&format!("FROM scratch\n{trigger}\n")).map_err(
                |error| BuildError::OnbuildTrigger {
                    trigger: trigger.clone(),
                    from: from.clone(),
                    at: Location::new(file_name, text, Some(stage.span)),
                    error,
                },
            )?;
            for parsed_stage in parsed.stages {
                instructions.extend(parsed_stage.instructions);
            }
        }
        let Some(target) = file.stages.get_mut(stage.id.0 as usize) else {
            continue;
        };
        let count = instructions.len();
        target.instructions.splice(0..0, instructions);
        let mut shown = texts;
        shown.truncate(count);
        triggers.insert(stage.id, shown);
    }
    Ok(triggers)
}
