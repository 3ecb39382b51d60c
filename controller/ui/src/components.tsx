// Pieces every page uses: phase badges, tables that scroll on a phone, tabs, a button that asks
// before it acts, and the link to where an object is declared in git.
import type { ComponentChildren } from "preact";
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import { commitOf, manifestOf, shortCommit } from "./format.ts";
import type { Resource } from "./types.ts";

const PHASE_TONES: Record<string, string> = {
  Deployed: "good",
  Serving: "good",
  Succeeded: "good",
  Ready: "good",
  True: "good",
  Building: "busy",
  Pending: "busy",
  Deploying: "busy",
  Progressing: "busy",
  Stopped: "quiet",
  Failed: "bad",
  Degraded: "bad",
  False: "bad",
};

export function Badge({ phase }: { phase: string | undefined }) {
  const text = phase ?? "Unknown";
  return <span class={`badge ${PHASE_TONES[text] ?? "quiet"}`}>{text}</span>;
}

/** A table in a box that scrolls sideways when the screen is narrower than the table. */
export function Table({
  head,
  children,
  label,
}: {
  head: string[];
  children: ComponentChildren;
  label: string;
}) {
  return (
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must be reachable by keyboard to scroll it.
    <section class="table-wrap" tabIndex={0} aria-label={label}>
      <table>
        <thead>
          <tr>
            {head.map((name) => (
              <th key={name} scope="col">
                {name}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </section>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="empty">{children}</p>;
}

export function ErrorNote({ message }: { message: string | undefined }) {
  return message ? (
    <p class="error" role="alert">
      {message}
    </p>
  ) : null;
}

export function Tabs({ tabs, current }: { tabs: [string, string][]; current: string }) {
  return (
    <nav class="tabs" aria-label="Sections">
      {tabs.map(([label, href]) => (
        <a key={href} href={href} aria-current={label === current ? "page" : undefined}>
          {label}
        </a>
      ))}
    </nav>
  );
}

/**
 * An operation that is not a change to git (restart, rotate a key, revoke a key): the first
 * press asks, the second acts. Escape or Cancel backs out.
 */
export function ConfirmButton({
  label,
  question,
  action,
}: {
  label: string;
  question: string;
  action: () => Promise<string | undefined>;
}) {
  const [state, setState] = useState<"idle" | "asking" | "working">("idle");
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string } | undefined>();
  const confirm = useRef<HTMLButtonElement>(null);
  const trigger = useRef<HTMLButtonElement>(null);
  /** Whether the question was answered (focus goes back to the button that asked it). */
  const answered = useRef(false);
  // A layout effect, in the same commit as the change it follows: useEffect waits for the next
  // frame, and meanwhile focus is nowhere (the Confirm button it was on is disabled, then gone)
  // while the outcome already shows — a keyboard user's next Tab would start from the top.
  useLayoutEffect(() => {
    if (state === "asking") confirm.current?.focus();
    if (state === "idle" && answered.current) {
      answered.current = false;
      trigger.current?.focus();
    }
  }, [state]);
  const backOut = () => {
    answered.current = true;
    setState("idle");
  };
  const run = async () => {
    setState("working");
    try {
      const text = await action();
      setOutcome({ ok: true, text: text ?? "done" });
    } catch (error) {
      setOutcome({ ok: false, text: (error as Error).message });
    }
    answered.current = true;
    setState("idle");
  };
  if (state === "idle") {
    return (
      <span class="confirm">
        <button type="button" ref={trigger} onClick={() => setState("asking")}>
          {label}
        </button>
        {outcome && (
          <span class={outcome.ok ? "note" : "error"} role="status">
            {outcome.text}
          </span>
        )}
      </span>
    );
  }
  return (
    // biome-ignore lint/a11y/noStaticElementInteractions: Escape anywhere in the question backs out.
    <span class="confirm asking" onKeyDown={(event) => event.key === "Escape" && backOut()}>
      <span>{question}</span>
      <button
        type="button"
        class="danger"
        ref={confirm}
        disabled={state === "working"}
        onClick={run}
      >
        Confirm
      </button>
      <button type="button" onClick={backOut} disabled={state === "working"}>
        Cancel
      </button>
    </span>
  );
}

/** The file and line an object is declared at, at the commit it was synced from. */
export function SourceLink({ object }: { object: Resource }) {
  const manifest = manifestOf(object);
  const commit = commitOf(object);
  if (!manifest || !commit) return <span class="muted">not from git</span>;
  const query = new URLSearchParams({
    commit,
    path: manifest.path,
    line: String(manifest.line),
  });
  return (
    <a class="source" href={`#/source?${query}`}>
      {manifest.path}:{manifest.line}
      <span class="muted"> @ {shortCommit(commit)}</span>
    </a>
  );
}

/** A block of code or data, with a button that copies it. */
export function Code({ text, label }: { text: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <figure class="code" aria-label={label}>
      <pre>{text}</pre>
      <button
        type="button"
        class="copy"
        onClick={async () => {
          await navigator.clipboard?.writeText(text);
          setCopied(true);
          window.setTimeout(() => setCopied(false), 1500);
        }}
      >
        {copied ? "Copied" : "Copy"}
      </button>
    </figure>
  );
}
