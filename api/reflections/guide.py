"""What each step is for and what it asks, and which step to suggest next.

The texts are Rebound's own, written from the ideas of the article in `shared/seed/`.

The next-step rule (also served by `GET /v1/reflection-guide` as `next_step_rule`):

* The suggestion is the first step, in the guide's order, that is neither done nor
  skipped, and is not held back.
* **Holding back.** While the rejection is less than a day old (counted from when it was
  logged, its `created_at`) and the emotions step reports an intensity of 4 or 5, the
  `feedback` and `mistakes` steps are held back: writing to an employer or listing one's
  mistakes in the first hot hours tends to go badly. They can still be written; they are
  only not suggested.
* If every unfinished step is held back, the first of them is suggested with
  `available_at` at the moment the hold lifts (one day after `created_at`).
* `available_at` is when the rule first suggests the step: the rejection's `created_at`,
  or one day later for a held-back step. There is no suggestion (`null`) once the
  reflection is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from api.reflections.steps import FINISHED, STEP_ORDER, StepKey, StepStatus

HOLD_BACK_STEPS: frozenset[StepKey] = frozenset({StepKey.feedback, StepKey.mistakes})
HOLD_BACK_FOR = timedelta(days=1)
HOLD_BACK_MIN_INTENSITY = 4

NEXT_STEP_RULE = (
    "Rebound suggests the first step, in this order, that is neither done nor skipped. "
    "While a rejection is less than a day old and the emotions step rates the intensity "
    f"{HOLD_BACK_MIN_INTENSITY} or more, the feedback and mistakes steps are held back: "
    "asking an employer why, or listing what you got wrong, goes better once the sting "
    "has eased. You can still fill them in; they just are not suggested until a day after "
    "you logged the rejection. If only held-back steps are left, the first of them is "
    "suggested with `available_at` set to when the day is up."
)


@dataclass(frozen=True)
class StepGuide:
    key: StepKey
    title: str
    prompt: str
    why_it_matters: str
    prompts: tuple[str, ...]
    done_when: str
    nudge: str


GUIDE: dict[StepKey, StepGuide] = {
    guide.key: guide
    for guide in (
        StepGuide(
            key=StepKey.emotions,
            title="Notice how it feels",
            prompt=(
                "How does this one land? Pick the words that fit, say how strongly you feel "
                "it, and write as much or as little as you like."
            ),
            why_it_matters=(
                "A no hurts, and feelings that get pushed aside have a way of showing up in "
                "the next cover letter or interview. Putting names to them, and a number on "
                "how strong they are, takes off some of the pressure. It also tells Rebound "
                "when to go gently with you."
            ),
            prompts=(
                "Which words describe how you feel right now? Choose all that apply.",
                "From 1 to 5, how hard has this one hit you?",
                "Take five minutes and write whatever comes up about the news.",
                "What has helped you feel a little steadier so far: a walk, a chat, an early "
                "night?",
            ),
            done_when="at least one emotion is chosen and the intensity is rated",
            nudge="Start by checking in with yourself: how does this one feel?",
        ),
        StepGuide(
            key=StepKey.strengths_weaknesses,
            title="Weigh what went well and what to build",
            prompt=(
                "Think back over the application and the conversations. Which skills served "
                "you well, and which would you like to be stronger?"
            ),
            why_it_matters=(
                "Once the first sting has passed, an honest look back shows two things: what "
                "you did well, which is worth doing again on purpose, and the gaps that are "
                "worth closing. Naming skills the same way each time lets Rebound spot the "
                "patterns across all your applications."
            ),
            prompts=(
                "Which moments went well? What skill did each one show?",
                "Where did you feel out of your depth?",
                "Which skill, had it been stronger, would have made the biggest difference?",
            ),
            done_when="at least one strength or one weakness is named",
            nudge="Take stock: what did you do well, and what would you like to build on?",
        ),
        StepGuide(
            key=StepKey.feedback,
            title="Ask for their view",
            prompt=(
                "Ask the employer what tipped the decision, then note what they said. Link "
                "a feedback request Rebound tracks for you, or summarise an answer you got "
                "another way."
            ),
            why_it_matters=(
                "The people who said no saw your application from a side you cannot. Even a "
                "two-line reply can confirm a hunch or point somewhere you had not looked, "
                "and a polite request leaves a good impression for next time."
            ),
            prompts=(
                "Who is best placed to answer: the recruiter, the hiring manager, an interviewer?",
                "What did they tell you, in a sentence or two?",
                "What will you take from it, even if the answer was vague?",
            ),
            done_when="a feedback request is linked or what you heard is summarised",
            nudge="Ask the employer for their view, and note what comes back.",
        ),
        StepGuide(
            key=StepKey.goals_values,
            title="Check the fit with what you want",
            prompt=(
                "Score how well this role served each of the values in your profile, and "
                "say whether it was a good, partial or poor fit overall."
            ),
            why_it_matters=(
                "A no is also a chance to ask whether this was the right yes to chase. "
                "Holding the role up against your long-term goals and the values you care "
                "about can turn disappointment into a clearer sense of direction, and "
                "sometimes into relief."
            ),
            prompts=(
                "How well did this role serve each of the values in your profile?",
                "All things considered, was it a good, partial or poor fit for you?",
                "Is there anything you would aim for differently from now on?",
            ),
            done_when="the overall role fit is given",
            nudge="Step back and check how well this role fitted what you want.",
        ),
        StepGuide(
            key=StepKey.mistakes,
            title="Find what you would do differently",
            prompt=(
                "Was there a moment you would handle differently? Note where it was, what "
                "happened, and what you will do next time."
            ),
            why_it_matters=(
                "Everybody slips somewhere. Pinning down one or two concrete moments, and "
                "the lesson in each, turns a vague sense of having failed into something "
                "specific you can practise."
            ),
            prompts=(
                "At which point would you change something: the application, your "
                "preparation, the interview, or the follow-up?",
                "What exactly happened?",
                "What will you do instead next time?",
            ),
            done_when="at least one mistake is described",
            nudge="Look for one moment you would handle differently next time.",
        ),
        StepGuide(
            key=StepKey.action,
            title="Choose your next move",
            prompt=(
                "Turn what you have learned into something you will do: link action items "
                "from a plan, or write down one commitment."
            ),
            why_it_matters=(
                "Insight fades unless it becomes something with a date on it. One small, "
                "concrete commitment, such as a course, a practice interview or a coffee "
                "with someone in the field, keeps you moving and puts you in charge of "
                "what happens next."
            ),
            prompts=(
                "What one thing will you do in the next two weeks?",
                "Would learning, practice, new experience or a mentor help most?",
                "Add it to an action plan so Rebound can remind you when it is due.",
            ),
            done_when="an action item is linked or a commitment is written",
            nudge="Pick one concrete thing you will do next.",
        ),
        StepGuide(
            key=StepKey.attitude,
            title="Keep your confidence",
            prompt=(
                "How confident do you feel about your search right now? Note a few wins, "
                "something you are grateful for, and something you look forward to."
            ),
            why_it_matters=(
                "Rejection comes with every job search and says little about your worth. "
                "Remembering your wins, and what you have to look forward to, helps you "
                "walk into the next application steady rather than bruised. Each no "
                "narrows the field towards the right yes."
            ),
            prompts=(
                "From 1 to 5, how confident do you feel about your search today?",
                "What has gone well lately, however small?",
                "Who or what are you grateful for this week?",
                "What are you looking forward to?",
            ),
            done_when="your confidence is rated",
            nudge="Finish by taking stock of your confidence and your wins.",
        ),
    )
}

GOALS_VALUES_WITHOUT_PROFILE_VALUES = (
    "First add the values that matter to you in your profile (PUT /v1/me/profile), for "
    "example growth, flexibility or a sense of purpose; then come back and score this role "
    "against them. You can already say whether it was a good, partial or poor fit."
)


def step_prompt(key: StepKey, *, has_profile_values: bool) -> str:
    """The prompt shown with a step; step 4 asks for profile values first if there are none."""
    if key is StepKey.goals_values and not has_profile_values:
        return GOALS_VALUES_WITHOUT_PROFILE_VALUES
    return GUIDE[key].prompt


@dataclass(frozen=True)
class Suggestion:
    key: StepKey
    available_at: datetime
    note: str


def suggest_next_step(
    *,
    statuses: dict[StepKey, StepStatus],
    rejection_created_at: datetime,
    emotion_intensity: int | None,
    now: datetime,
) -> Suggestion | None:
    """The step to do next under the rule in this module's docstring; None when complete."""
    unfinished = [key for key in STEP_ORDER if statuses[key] not in FINISHED]
    if not unfinished:
        return None
    hold_until = rejection_created_at + HOLD_BACK_FOR
    holding = (
        emotion_intensity is not None
        and emotion_intensity >= HOLD_BACK_MIN_INTENSITY
        and now < hold_until
    )
    held = [key for key in unfinished if holding and key in HOLD_BACK_STEPS]
    available = [key for key in unfinished if key not in held]
    if available:
        key = available[0]
        note = GUIDE[key].nudge
        if held:
            note += (
                " Asking for feedback and listing mistakes can wait until tomorrow; "
                "look after yourself first."
            )
        available_at = (
            hold_until
            if key in HOLD_BACK_STEPS
            and emotion_intensity is not None
            and emotion_intensity >= HOLD_BACK_MIN_INTENSITY
            else rejection_created_at
        )
        return Suggestion(key=key, available_at=available_at, note=note)
    key = held[0]
    return Suggestion(
        key=key,
        available_at=hold_until,
        note=(
            "You have done everything that helps most right now. Give it until tomorrow "
            "before this one: it goes better once the sting has eased."
        ),
    )
