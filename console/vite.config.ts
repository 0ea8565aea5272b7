import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

// The daemon serves the output under a strict CSP (README.md): one script file, one
// style sheet, nothing inline, nothing from elsewhere. ARBOR_CONSOLE_OUT is where the C++
// build wants it (relative paths are relative to this folder).
export default defineConfig({
  base: '/',
  plugins: [preact()],
  build: {
    outDir: process.env.ARBOR_CONSOLE_OUT || 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: 'es2020',
  },
  server: {
    // `npm run dev` against a running daemon: ARBOR_API=http://127.0.0.1:8432 npm run dev
    proxy: process.env.ARBOR_API ? { '/api': process.env.ARBOR_API } : undefined,
  },
});
