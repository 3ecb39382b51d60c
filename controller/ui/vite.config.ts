// Builds the dashboard (docs/dashboard.md): `npm run build` writes controller/ui/dist, which
// `modelship up` serves at /ui. Everything is bundled; the page loads nothing from elsewhere.
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  base: "/ui/",
  // Preact's JSX, without React.
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // The polyfill is an inline script, which the page's Content-Security-Policy forbids.
    modulePreload: { polyfill: false },
    target: "es2022",
    reportCompressedSize: true,
  },
  logLevel: "warn",
});
