// Bookbot: the review controls shown inside one reasoning step.
// Readers get thumbs up/down; editors (and lab members) rate -1/0/+1, write a
// correction and tag the fault.  Every click goes to the server through
// callAction("review_step"); the server checks the role, stores the review and
// sends these props back updated (so the state survives reloads).  All text is
// rendered by React as text: a correction containing markup is never executed.
import { useEffect, useState } from "react";
import { Button } from "@/components/ui/button";
import { Textarea } from "@/components/ui/textarea";
import { ThumbsUp, ThumbsDown } from "lucide-react";

const RATING_LABEL = { "-1": "−1 wrong", "0": "0 neutral", "1": "+1 good" };

export default function StepReview() {
  const isEditor = props.role === "editor" || props.role === "lab";
  const ed = props.editor || null;
  const [rating, setRating] = useState(ed ? ed.rating : null);
  const [correction, setCorrection] = useState(ed ? ed.correction : "");
  const [tags, setTags] = useState(ed ? ed.fault_tags : []);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState("");

  useEffect(() => {
    setRating(ed ? ed.rating : null);
    setCorrection(ed ? ed.correction : "");
    setTags(ed ? ed.fault_tags : []);
  }, [ed && ed.updated, ed && ed.rating, ed && ed.source]);

  async function send(payload) {
    setBusy(true);
    setError("");
    try {
      const res = await callAction({ name: "review_step", payload: { step_id: props.step_id, ...payload } });
      const r = res && res.response;
      if (!r || !r.ok) setError((r && r.error) || "Not recorded — please try again.");
    } catch (e) {
      setError("Not recorded: " + String(e));
    } finally {
      setBusy(false);
    }
  }

  const reader = props.reader;
  const thumbs = (
    <div className="flex items-center gap-1" data-testid="reader-controls">
      <Button size="sm" variant={reader && reader.rating === 1 ? "default" : "outline"} disabled={busy}
        aria-label="thumbs up" data-testid="thumb-up" onClick={() => send({ kind: "reader", rating: 1 })}>
        <ThumbsUp className="h-4 w-4" />
      </Button>
      <Button size="sm" variant={reader && reader.rating === -1 ? "default" : "outline"} disabled={busy}
        aria-label="thumbs down" data-testid="thumb-down" onClick={() => send({ kind: "reader", rating: -1 })}>
        <ThumbsDown className="h-4 w-4" />
      </Button>
      {reader ? <span className="text-xs text-muted-foreground" data-testid="reader-recorded">
        your rating is recorded ({reader.rating === 1 ? "helpful" : "not helpful"})</span> : null}
    </div>
  );

  if (!isEditor) {
    return <div className="mt-1">{thumbs}{error ? <div className="text-xs text-red-600" data-testid="review-error">{error}</div> : null}</div>;
  }

  const inferred = ed && ed.source === "inferred";
  const toggleTag = (t) => setTags(tags.includes(t) ? tags.filter((x) => x !== t) : [...tags, t]);
  const labels = props.fault_labels || {};

  return (
    <div className="mt-2 rounded-md border p-2 flex flex-col gap-2 text-sm" data-testid="editor-controls">
      <div className="flex flex-wrap items-center gap-1">
        <span className="text-xs font-medium mr-1">Editor rating:</span>
        {[-1, 0, 1].map((v) => (
          <Button key={v} size="sm" variant={rating === v ? "default" : "outline"} disabled={busy}
            data-testid={"rate-" + v} onClick={() => setRating(v)}>
            {RATING_LABEL[String(v)]}
          </Button>
        ))}
        {ed ? (
          <span className="text-xs ml-2" data-testid="editor-recorded">
            {inferred
              ? "Counted wrong: an earlier step of this turn was rated −1 (inferred, you may still rate it)."
              : "Recorded " + RATING_LABEL[String(ed.rating)] + (ed.updated ? " · " + ed.updated : "")}
          </span>
        ) : null}
      </div>
      {rating === -1 && !inferred ? <div className="text-xs text-muted-foreground">
        −1 ends the review of this turn: the later steps count as wrong too.</div> : null}
      <div className="flex flex-wrap gap-1">
        {Object.keys(labels).map((t) => (
          <Button key={t} size="sm" variant={tags.includes(t) ? "secondary" : "ghost"} disabled={busy}
            className={tags.includes(t) ? "border border-primary" : "border"}
            data-testid={"tag-" + t} aria-pressed={tags.includes(t)} onClick={() => toggleTag(t)}>
            {labels[t]}
          </Button>
        ))}
      </div>
      <Textarea value={correction} placeholder="Correction (optional): how should this step read?"
        data-testid="correction" rows={2} onChange={(e) => setCorrection(e.target.value)} />
      <div className="flex items-center gap-2">
        <Button size="sm" disabled={busy || rating === null} data-testid="save-review"
          onClick={() => send({ kind: "editor", rating: rating, correction: correction, fault_tags: tags })}>
          {ed && !inferred ? "Update review" : "Save review"}
        </Button>
        {thumbs}
      </div>
      {ed && ed.correction && !inferred ? (
        <div className="text-xs whitespace-pre-wrap" data-testid="recorded-correction">
          Recorded correction: {ed.correction}</div>
      ) : null}
      {error ? <div className="text-xs text-red-600" data-testid="review-error">{error}</div> : null}
    </div>
  );
}
