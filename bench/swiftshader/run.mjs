// `node bench/swiftshader/run.mjs`: times clipseg's WGSL matmul (src/engine/gpu/matmul.wgsl, and its
// f16, 8- and 4-bit weight twins) against a shared-memory tiled kernel in headless Chromium's WebGPU (SwiftShader on machines without a
// GPU), same shape, same page, and prints GFLOP/s and the ratio. Why src/engine/gpu's kernels use no
// workgroup memory: see src/engine/gpu/mod.rs.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchChromium, serve } from '../../tests/e2e/harness.mjs';

const root = path.resolve(fileURLToPath(new URL('.', import.meta.url)), '../..');
const server = await serve(root, () => {});
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/bench/swiftshader/kernels.html`);
  await page.waitForFunction(() => window.__result, null, { timeout: 600_000 });
  const result = await page.evaluate(() => window.__result);
  if (result.error) throw new Error(result.error);
  console.log(`adapter: ${result.adapter}; [${result.shape.M} x ${result.shape.K}] x [${result.shape.K} x ${result.shape.N}]`);
  for (const r of result.rows) console.log(`  ${r.kernel.padEnd(64)} ${r.ms.toFixed(0).padStart(6)} ms  ${r.gflops.toFixed(2).padStart(6)} GFLOP/s  max|err| ${r.max_abs_err.toExponential(1)}`);
  console.log(`ratio clipseg / tiled: ${result.ratio_ours_over_tiled.toFixed(2)}x`);
  console.log(`ratio f16 / f32 weights: ${result.ratio_f16_over_f32.toFixed(2)}x, q8 / f32: ${result.ratio_q8_over_f32.toFixed(2)}x, q4 / f32: ${result.ratio_q4_over_f32.toFixed(2)}x`);
} finally {
  await browser.close();
  server.close();
}
