// Bookbot: one cited book passage, shown in the side panel.
// Book, chapter and paragraph on top; the passage below with the quoted part
// highlighted.  Segments are plain text rendered by React (never HTML).
// Chainlit loads a custom element's JSX by the element's name, and the name is
// also the link text in the step ("Source 1"), so "Source 1.jsx" … "Source 4.jsx"
// are identical copies of this file (tests/ui/test_present.py checks that).
export default function Excerpt() {
  const segments = props.segments || [];
  return (
    <div className="flex flex-col gap-2 p-1" data-testid="excerpt">
      <div>
        {props.step ? <div className="text-xs uppercase text-muted-foreground">{props.step} · source {props.number}</div> : null}
        <div className="font-semibold" data-testid="excerpt-book">{props.book}</div>
        <div className="text-sm text-muted-foreground">{props.chapter}</div>
        <div className="text-xs text-muted-foreground">{props.location}</div>
      </div>
      <div className="text-sm leading-relaxed whitespace-pre-wrap" data-testid="excerpt-text">
        {segments.map((s, i) =>
          s.mark ? (
            <mark key={i} className="bg-yellow-200 dark:bg-yellow-700 rounded px-0.5" data-testid="excerpt-quote">{s.text}</mark>
          ) : (
            <span key={i}>{s.text}</span>
          )
        )}
      </div>
    </div>
  );
}
