// Runs every example of the given markdown files (README.md and
// docs/EXTENSION.md under ctest), so that the documentation cannot rot.
//
// Every code block (fenced, or indented by four spaces) must follow a marker
// line saying what it is; a block without one fails the test:
//   <!-- example: sql [s3] [expect-error="TEXT"] -->  SQL, run statement by
//        statement in one DuckDB (Node, @duckdb/node-api 1.4.4) per file, in
//        order; expect-error: the block must fail with TEXT in the message
//   <!-- example: sh [s3] [until="TEXT"] -->  bash -e in the file's sandbox;
//        until: a long-running command, stopped with SIGTERM once its output
//        shows TEXT, which must then exit 0
//   <!-- example: js -->      a CommonJS program, run with node
//   <!-- example: config [s3] -->  a config file for the command line, given
//        to `duckblock ls --databases --config FILE`
//   <!-- example: none (WHY) -->  not run, and WHY says why
// s3 marks an example whose store is S3: it runs against the s3rver of the
// ctest fixture (DUCKBLOCK_TEST_S3RVER_FILE).
//
// Each file runs in a sandbox directory; the examples' paths and URLs are
// rewritten into it before they run (rewrite() below): absolute paths under
// /data, /tmp, /replica, /srv, /backups and /var/lib, file:/// and
// duckblock:/// URLs, the S3 URLs s3://bucket/ and s3://my-bucket/ (to the
// fixture's bucket, under a fresh prefix), /path/to/duckblock.duckdb_extension
// (the built extension). The examples' dates (2026-11-25) precede any point
// a run creates, so they become 2099-11-25: "the last point at or before"
// that time is then the latest. The command-line examples find
// /data/app.duckdb, a small DuckDB database the runner creates first.
//
// usage: node docs_examples_test.cjs EXTENSION_FILE NODE_HOST_DIR CLI_FILE DOC.md...
'use strict';
const assert = require('node:assert/strict');
const cp = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const [extension, hostDir, cli, ...docs] = process.argv.slice(2).map((p) => path.resolve(p));
if (!extension || !hostDir || !cli || docs.length === 0) {
  console.error('usage: node docs_examples_test.cjs EXTENSION_FILE NODE_HOST_DIR CLI_FILE DOC.md...');
  process.exit(2);
}
const nodeModules = path.join(hostDir, 'node_modules');
// The documented line (docs/EXTENSION.md, "Node"), with the binding found in
// the test's Node host.
process.dlopen({ exports: {} }, require.resolve('@duckdb/node-bindings-linux-x64/duckdb.node', { paths: [hostDir] }),
               os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL);
const { DuckDBInstance } = require(path.join(nodeModules, '@duckdb', 'node-api'));

// --- extraction ---------------------------------------------------------------

function parseMarker(line) {
  const m = /^<!-- example: (\w+)(.*?) -->$/.exec(line.trim());
  if (!m) return null;
  const rest = m[2];
  const attr = (name) => {
    const a = new RegExp(`${name}="([^"]*)"`).exec(rest);
    return a ? a[1] : undefined;
  };
  return { kind: m[1], s3: /(^|\s)s3(\s|$)/.test(rest), expectError: attr('expect-error'), until: attr('until'),
           why: rest.trim() };
}

// Every code block of a markdown file: { line, lang, text, marker }.
function extract(file) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const blocks = [];
  const markerBefore = (i) => {
    let j = i - 1;
    while (j >= 0 && lines[j].trim() === '') j--;
    return j >= 0 ? parseMarker(lines[j]) : null;
  };
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\w*)/.exec(lines[i]);
    if (fence) {
      let j = i + 1;
      while (j < lines.length && !lines[j].startsWith('```')) j++;
      blocks.push({ line: i + 1, lang: fence[1], text: lines.slice(i + 1, j).join('\n'), marker: markerBefore(i) });
      i = j;
      continue;
    }
    // An indented code block starts after a blank line (not inside a list:
    // list continuations in these files are indented by fewer than four).
    if (lines[i].startsWith('    ') && i > 0 && lines[i - 1].trim() === '') {
      let j = i;
      const body = [];
      while (j < lines.length && (lines[j].startsWith('    ') || lines[j].trim() === '')) body.push(lines[j++].slice(4));
      while (body.length && body[body.length - 1].trim() === '') body.pop();
      blocks.push({ line: i + 1, lang: '', text: body.join('\n'), marker: markerBefore(i) });
      i = j - 1;
    }
  }
  return blocks;
}

// --- the sandbox ----------------------------------------------------------------

function s3Server() {
  const file = process.env.DUCKBLOCK_TEST_S3RVER_FILE;
  if (!file) return null;
  const port = Number(fs.readFileSync(file, 'utf8').trim().split(/\s+/)[0]);
  assert.ok(port > 0, `no port in ${file}`);
  return `http://127.0.0.1:${port}`;
}

function rewrite(text, sandbox, id) {
  // The extension's real path goes in last: the build tree may itself lie
  // under one of the directories rewritten below (a clone in /tmp).
  const placeholder = '\u0000DUCKBLOCK_EXTENSION\u0000';
  return text
    .replaceAll('/path/to/duckblock.duckdb_extension', placeholder)
    .replace(/s3:\/\/(my-)?bucket\//g, (m, my) => `s3://duckblock-test/docs-${id}/${my ? 'my-bucket' : 'bucket'}/`)
    .replace(/(file|duckblock):\/\/\//g, (m, scheme) => `${scheme}://${sandbox}/`)
    .replace(/(^|[\s'"(=])\/(data|tmp|replica|srv|backups|var\/lib)\//gm, (m, pre, dir) => `${pre}${sandbox}/${dir}/`)
    .replace(/2026-11-25(?=[T ]\d)/g, '2099-11-25')
    .replaceAll(placeholder, extension);
}

// SQL statements of a block (split at semicolons outside quotes), without
// the ones that are only comments.
function statements(sql) {
  const out = [];
  let cur = '', quote = null;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i];
    if (quote) {
      if (c === quote) quote = null;
    } else if (c === "'" || c === '"') {
      quote = c;
    } else if (c === '-' && sql[i + 1] === '-') {
      while (i < sql.length && sql[i] !== '\n') i++;
      cur += '\n';
      continue;
    } else if (c === ';') {
      out.push(cur);
      cur = '';
      continue;
    }
    cur += c;
  }
  out.push(cur);
  return out.map((s) => s.trim()).filter((s) => s !== '');
}

function run(cmd, args, opts) {
  const r = cp.spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  return { code: r.status, out: r.stdout ?? '', err: r.stderr ?? '' };
}

// Runs `command` until its output shows `text`, then stops it with SIGTERM;
// it must then exit 0. The bound only fails a hang.
async function runUntil(command, text, opts) {
  const child = cp.spawn('bash', ['-c', `exec ${command}`], { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const giveUp = Date.now() + 120000;
  while (!out.includes(text)) {
    if (child.exitCode !== null || Date.now() > giveUp) {
      child.kill('SIGKILL');
      throw new Error(`never printed "${text}" (exit ${child.exitCode})\n${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGTERM');
  const { code, signal } = await exited;
  if (code !== 0) throw new Error(`exit ${code} ${signal ?? ''} after SIGTERM\n${out}\n${err}`);
  return out;
}

async function main() {
  const endpoint = s3Server();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'duckblock-docs-'));
  const id = path.basename(root);
  const env = { ...process.env, PATH: `${path.dirname(cli)}:${process.env.PATH}`, NODE_PATH: nodeModules };
  delete env.AWS_PROFILE;
  delete env.DUCKBLOCK_CONFIG;
  if (endpoint) {
    Object.assign(env, { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1',
                         AWS_ENDPOINT_URL_S3: endpoint });
  }
  // The extension runs in this process and reads the environment here.
  Object.assign(process.env, env);
  let ran = 0, skipped = 0;
  for (const doc of docs) {
    const name = path.basename(doc, '.md');
    const sandbox = path.join(root, name);
    for (const d of ['data/eu', 'tmp', 'replica', 'srv/replica', 'srv/backups', 'backups', 'var/lib/duckblock']) {
      fs.mkdirSync(path.join(sandbox, d), { recursive: true });
    }
    let instance = null, con = null;
    let haveAppDb = false;
    for (const b of extract(doc)) {
      const where = `${path.relative(process.cwd(), doc)}:${b.line}`;
      if (!b.marker) throw new Error(`${where}: a code block with no <!-- example: ... --> marker before it`);
      const m = b.marker;
      if (m.kind === 'none') {
        assert.ok(m.why.length > 0, `${where}: "example: none" needs a reason`);
        skipped++;
        continue;
      }
      if (m.s3 && !endpoint) throw new Error(`${where}: an S3 example, and no s3rver (run under ctest: ctest -L extension)`);
      const text = rewrite(b.text, sandbox, `${id}-${name}`);
      console.log(`--- ${where} (${m.kind}${m.s3 ? ', s3' : ''})`);
      try {
        if (m.kind === 'sql') {
          if (!instance) {
            instance = await DuckDBInstance.create(':memory:', { allow_unsigned_extensions: 'true' });
            con = await instance.connect();
          }
          const stmts = statements(text);
          for (let i = 0; i < stmts.length; i++) {
            const last = i === stmts.length - 1;
            if (m.expectError !== undefined && last) {
              await assert.rejects(con.run(stmts[i]), (e) => e.message.includes(m.expectError),
                                   `${where}: expected the error "${m.expectError}"`);
            } else {
              await con.run(stmts[i]);
            }
          }
        } else if (m.kind === 'sh' || m.kind === 'config') {
          if (!haveAppDb) {
            // The database file the command-line examples replicate.
            const db = await DuckDBInstance.create(path.join(sandbox, 'data', 'app.duckdb'));
            const c = await db.connect();
            await c.run('CREATE TABLE t AS SELECT range AS id, random() AS v FROM range(10000)');
            c.closeSync();
            db.closeSync();
            haveAppDb = true;
          }
          if (m.kind === 'config') {
            const file = path.join(sandbox, 'config.json');
            fs.writeFileSync(file, text);
            const r = run(cli, ['ls', '--databases', '--config', file], { env, cwd: sandbox });
            assert.equal(r.code, 0, `${where}: duckblock ls --config failed\n${r.out}\n${r.err}`);
          } else if (m.until !== undefined) {
            await runUntil(text, m.until, { env, cwd: sandbox });
          } else {
            const r = run('bash', ['-e', '-o', 'pipefail', '-c', text], { env, cwd: sandbox });
            assert.equal(r.code, 0, `${where}: exit ${r.code}\n${text}\n${r.out}\n${r.err}`);
          }
        } else if (m.kind === 'js') {
          const file = path.join(sandbox, `example-${b.line}.cjs`);
          fs.writeFileSync(file, text);
          const r = run(process.execPath, [file], { env, cwd: sandbox });
          assert.equal(r.code, 0, `${where}: exit ${r.code}\n${r.out}\n${r.err}`);
        } else {
          throw new Error(`${where}: unknown example kind '${m.kind}'`);
        }
      } catch (e) {
        e.message = `${where}: ${e.message}`;
        throw e;
      }
      ran++;
    }
    if (instance) {
      con.closeSync();
      instance.closeSync();
    }
  }
  fs.rmSync(root, { recursive: true, force: true });
  console.log(`docs examples: ${ran} ran, ${skipped} marked as not runnable, in ${docs.length} files`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
