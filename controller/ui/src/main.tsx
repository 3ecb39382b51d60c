// The dashboard's shell: sign-in, the header and its navigation, and the routes (docs/dashboard.md).
import "./style.css";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { onSignedOut, sessionToken, signIn, signOut } from "./api.ts";
import { useRoute } from "./hooks.ts";
import { AdminPage } from "./pages/admin.tsx";
import { ModelPage } from "./pages/model.tsx";
import { ModelsPage } from "./pages/models.tsx";
import { RepositoryPage } from "./pages/repository.tsx";
import { SourcePage } from "./pages/source.tsx";

function Login({ onSignedIn, reason }: { onSignedIn: () => void; reason: string | undefined }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState(reason);
  const [working, setWorking] = useState(false);
  const submit = async (event: Event) => {
    event.preventDefault();
    setWorking(true);
    try {
      await signIn({ token: token.trim() });
      onSignedIn();
    } catch (failure) {
      setError((failure as Error).message);
    }
    setWorking(false);
  };
  return (
    <main class="login">
      <h1>modelship</h1>
      <form onSubmit={submit}>
        <label for="token">Admin token</label>
        <input
          id="token"
          type="password"
          autocomplete="off"
          value={token}
          onInput={(event) => setToken((event.target as HTMLInputElement).value)}
          required
        />
        <p class="hint">
          The token is in <code>admin.json</code> in the state directory of{" "}
          <code>modelship up</code>; or run <code>modelship dashboard</code> for a sign-in link.
        </p>
        <button type="submit" disabled={working}>
          Sign in
        </button>
        {error && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

const NAV: [string, string, string][] = [
  ["Models", "#/models", "models"],
  ["Repository", "#/repository", "repository"],
  ["Admin", "#/admin", "admin"],
];

function Shell() {
  const route = useRoute();
  const [section = "models", ...rest] = route;
  let page: preact.JSX.Element;
  // Keyed by name: another model's page starts afresh (no shown key, input or answer carried over).
  if (section === "models" && rest[0])
    page = <ModelPage key={rest[0]} name={rest[0]} tab={rest[1] ?? ""} />;
  else if (section === "repository") page = <RepositoryPage />;
  else if (section === "admin") page = <AdminPage />;
  else if (section === "source") page = <SourcePage />;
  else page = <ModelsPage />;
  return (
    <>
      {/* A button, not a link: the hash is the route, and "#main" would be a page of its own. */}
      <button type="button" class="skip" onClick={() => document.getElementById("main")?.focus()}>
        Skip to content
      </button>
      <header>
        <a class="brand" href="#/models">
          modelship
        </a>
        <nav aria-label="Main">
          {NAV.map(([label, href, key]) => (
            <a key={key} href={href} aria-current={section === key ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <button type="button" class="quiet" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <main id="main" tabIndex={-1}>
        {page}
      </main>
    </>
  );
}

/** A link's one-time code, taken out of the address bar at once (it must not stay in history). */
function takeLinkCode(): string | undefined {
  const match = /^#code=([A-Za-z0-9_-]+)$/.exec(window.location.hash);
  if (!match) return undefined;
  history.replaceState(null, "", `${window.location.pathname}#/models`);
  return match[1];
}

function App() {
  const [signedIn, setSignedIn] = useState(sessionToken() !== null);
  const [reason, setReason] = useState<string | undefined>();
  const [code] = useState(takeLinkCode);
  const [exchanging, setExchanging] = useState(code !== undefined);
  useEffect(() => onSignedOut(() => setSignedIn(false)), []);
  useEffect(() => {
    if (!code) return;
    signIn({ code })
      .then(() => setSignedIn(true))
      .catch((error: Error) => setReason(error.message))
      .finally(() => setExchanging(false));
  }, [code]);
  if (exchanging) return <p class="empty">Signing in…</p>;
  if (!signedIn) {
    return (
      <Login
        reason={reason}
        onSignedIn={() => {
          setReason(undefined);
          setSignedIn(true);
        }}
      />
    );
  }
  return <Shell />;
}

render(<App />, document.getElementById("app") as HTMLElement);
