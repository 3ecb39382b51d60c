// Vite bundles the style sheets the code imports.
declare module "*.css";
