// Shared by tests/e2e/run.mjs, page.mjs and visit.mjs (the end-to-end tests) and bench/browser.mjs (the
// browser benchmark): a static file server, headless Chromium with WebGPU enabled, an .npy
// reader, a PNG decoder and encoder.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import zlib from 'node:zlib';
import { createServer } from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.css': 'text/css',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
};

// Flags for headless Chromium; --enable-unsafe-webgpu gives a WebGPU adapter on Linux
// (SwiftShader without a GPU). E2E_CHROMIUM_ARGS adds more (e.g. --enable-features=Vulkan).
export function chromiumArgs() {
  return [
    '--headless', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run',
    ...(process.env.E2E_CHROMIUM_ARGS ?? '').split(' ').filter(Boolean),
  ];
}

// CHROMIUM picks another browser binary (default /usr/bin/chromium).
export function launchChromium(args = chromiumArgs()) {
  const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
  return chromium.launch({ executablePath, headless: true, args });
}

// float32 little-endian C-order .npy → {shape, data}; throws on anything else.
export function readNpy(file) {
  const b = fs.readFileSync(file);
  if (b.toString('latin1', 0, 6) !== '\x93NUMPY') throw new Error(`${file}: not an .npy file`);
  const [start, len] = b[6] === 1 ? [10, b.readUInt16LE(8)] : [12, b.readUInt32LE(8)];
  const header = b.toString('latin1', start, start + len);
  if (!/'descr':\s*'<f4'/.test(header) || /'fortran_order':\s*True/.test(header))
    throw new Error(`${file}: not little-endian float32 C order: ${header}`);
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').filter((s) => s.trim()).map(Number);
  // Copied: the data offset need not be 4-byte aligned within Node's buffer pool.
  const data = new Float32Array(b.buffer.slice(b.byteOffset + start + len, b.byteOffset + b.length));
  if (data.length !== shape.reduce((a, n) => a * n, 1)) throw new Error(`${file}: ${data.length} values for shape [${shape}]`);
  return { shape, data };
}

// Static files under `dir` (symlinks followed) on 127.0.0.1, random port; no COOP/COEP headers,
// `headers` added to every answer (e.g. CORS). Misses are logged with `log`.
export async function serve(dir, log = console.log, headers = {}) {
  const s = createServer((req, res) => {
    if (req.url === '/favicon.ico') return res.writeHead(204).end(); // asked for by every page
    let file;
    try {
      file = path.join(dir, decodeURIComponent(new URL(req.url, 'http://h').pathname));
    } catch {
      return res.writeHead(400).end();
    }
    fs.stat(file, (err, st) => {
      if (err || !st.isFile() || !file.startsWith(`${dir}/`)) {
        log(`  http 404 ${req.url}`);
        return res.writeHead(404, headers).end();
      }
      const type = MIME[path.extname(file)] ?? 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'content-length': st.size, 'cache-control': 'no-store', ...headers });
      if (req.method === 'HEAD') return res.end();
      fs.createReadStream(file).pipe(res);
    });
  });
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  return s;
}

// 8-bit non-interlaced PNG (grey, grey+alpha, RGB, RGBA) → {width, height, channels, data};
// enough for the CLI's masks and the canvas's exports. Throws on anything else.
export function decodePng(buf) {
  if (buf.toString('latin1', 1, 4) !== 'PNG') throw new Error('not a PNG');
  let at = 8, width, height, depth, type, interlace;
  const idat = [];
  while (at < buf.length) {
    const len = buf.readUInt32BE(at), kind = buf.toString('latin1', at + 4, at + 8), body = buf.subarray(at + 8, at + 8 + len);
    if (kind === 'IHDR') [width, height, depth, type, interlace] = [body.readUInt32BE(0), body.readUInt32BE(4), body[8], body[9], body[12]];
    else if (kind === 'IDAT') idat.push(body);
    else if (kind === 'IEND') break;
    at += 12 + len;
  }
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[type];
  if (depth !== 8 || !channels || interlace) throw new Error(`unsupported PNG: bit depth ${depth}, colour type ${type}, interlace ${interlace}`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels, data = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = data.subarray(y * stride, (y + 1) * stride), up = y ? data.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? row[x - channels] : 0, b = up[x], c = x >= channels ? up[x - channels] : 0;
      const pred = [0, a, b, (a + b) >> 1, paeth(a, b, c)][filter];
      if (pred === undefined) throw new Error(`bad PNG filter ${filter}`);
      row[x] = (src[x] + pred) & 255;
    }
  }
  return { width, height, channels, data };
}

function paeth(a, b, c) {
  const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Prints a failure line and exits 1: for setup errors, before any check has run. */
export function fail(message) {
  console.log(`FAIL: ${message}`);
  process.exit(1);
}

/** The native CLI the browser is compared with: CLIPSEG_BIN, else target/debug/clipseg. */
export function cliBinary(root) {
  const name = process.env.CLIPSEG_BIN ?? 'target/debug/clipseg';
  return { name, path: path.resolve(root, name) };
}

/** Runs the CLI, echoing the command; any failure ends the test. */
export function cli(bin, ...argv) {
  console.log(`$ ${bin.name} ${argv.map((a) => (/^[\w./=-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')}`);
  try {
    execFileSync(bin.path, argv, { stdio: 'inherit', timeout: 4 * 60_000 });
  } catch (e) {
    fail(`${bin.name} ${argv[0]}: ${e.message.split('\n')[0]}`);
  }
}

/** RGB8 pixels (width*height*3 bytes) → a PNG file (no filtering), for generated test images. */
export function encodePng(width, height, rgb) {
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) Buffer.from(rgb.buffer, rgb.byteOffset + y * width * 3, width * 3).copy(raw, y * (width * 3 + 1) + 1);
  const chunk = (kind, body) => {
    const head = Buffer.alloc(8), tail = Buffer.alloc(4);
    head.writeUInt32BE(body.length, 0);
    head.write(kind, 4, 'latin1');
    tail.writeUInt32BE(zlib.crc32(Buffer.concat([Buffer.from(kind, 'latin1'), body])), 0);
    return Buffer.concat([head, body, tail]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, deflate, no filter method, no interlace
  const magic = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([magic, chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}
