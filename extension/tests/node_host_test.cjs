// The extension in a second real host: Node with @duckdb/node-api 1.4.4
// (the release libduckdb.so through @duckdb/node-bindings). Loads the built
// duckblock.duckdb_extension and replicates a workload from a leader to a
// follower with SQL only, as a Node program would.
//
// usage: node node_host_test.cjs EXTENSION_FILE NODE_HOST_DIR
// (NODE_HOST_DIR: where scripts/node_host.sh installed @duckdb/node-api)
'use strict';
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const [extension, hostDir] = process.argv.slice(2).map((p) => p && path.resolve(p));
if (!extension || !hostDir) {
  console.error('usage: node node_host_test.cjs EXTENSION_FILE NODE_HOST_DIR');
  process.exit(2);
}
// A DuckDB C++ extension leaves DuckDB's symbols undefined, to be resolved
// from the host's DuckDB when DuckDB dlopens it. Node loads native addons
// RTLD_LOCAL, which keeps the libduckdb.so that @duckdb/node-bindings brings
// out of the global scope, so a C++ extension's symbols would not resolve
// ("undefined symbol: _ZTIN6duckdb..."). Loading the binding once with
// RTLD_GLOBAL first (what the older `duckdb` npm package did itself) makes
// them visible; the require() below then reuses the loaded library.
const bindingPath = require.resolve('@duckdb/node-bindings-linux-x64/duckdb.node', { paths: [hostDir] });
process.dlopen({ exports: {} }, bindingPath, os.constants.dlopen.RTLD_NOW | os.constants.dlopen.RTLD_GLOBAL);
const { DuckDBInstance } = require(path.join(hostDir, 'node_modules', '@duckdb', 'node-api'));

const sqlString = (s) => `'${s.replaceAll("'", "''")}'`;

async function host() {
  // allow_unsigned_extensions must be set when the database opens.
  const instance = await DuckDBInstance.create(':memory:', { allow_unsigned_extensions: 'true' });
  const con = await instance.connect();
  await con.run(`LOAD ${sqlString(extension)}`);
  const rows = async (sql) => (await con.runAndReadAll(sql)).getRowObjectsJS();
  return { instance, con, rows };
}

// What a query can see of database `db`: tables, row counts, row hashes.
async function fingerprint(h, db) {
  const tables = await h.rows(
    `SELECT table_name FROM duckdb_tables() WHERE database_name = ${sqlString(db)} ORDER BY table_name`);
  let out = '';
  for (const { table_name } of tables) {
    const [r] = await h.rows(
      `SELECT count(*)::VARCHAR AS n, coalesce(sum(hash(x)::HUGEINT), 0)::VARCHAR AS h FROM "${db}"."${table_name}" AS x`);
    out += `${table_name}:${r.n}:${r.h};`;
  }
  return out;
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'duckblock-node-'));
  const store = `file://${dir}/store`;
  const leaderFile = `${dir}/leader/orders.duckdb`;
  const replicaFile = `${dir}/replica/orders.duckdb`;
  fs.mkdirSync(path.dirname(leaderFile), { recursive: true });
  fs.mkdirSync(path.dirname(replicaFile), { recursive: true });

  const leader = await host();
  await leader.con.run(`SET duckblock_store = ${sqlString(store)}`);
  await leader.con.run(`ATTACH ${sqlString('duckblock://' + leaderFile)} AS lead`);
  const ship = async () => {
    await leader.con.run('CHECKPOINT lead');
    const [s] = await leader.rows(`SELECT shipped_seq, spooled_seq, pending_segments, last_error
                                   FROM duckblock_sync('orders')`);
    assert.equal(s.shipped_seq, s.spooled_seq);
    assert.equal(s.pending_segments, 0n);
    assert.equal(s.last_error, null);
    return s.shipped_seq;
  };
  await ship();

  const follower = await host();
  await follower.con.run(`CALL duckblock_follow('orders', ${sqlString(store)}, ${sqlString(replicaFile)},
                                               alias := 'rep', poll_interval_ms := 0)`);
  const steps = [
    `CREATE TABLE lead.o AS SELECT range AS id, (random() * 100)::INT AS qty, 'cust' || (range % 97) AS c
       FROM range(200000)`,
    'UPDATE lead.o SET qty = qty + 1 WHERE id % 7 = 0',
    'DELETE FROM lead.o WHERE id % 5 = 0',
    'CREATE TABLE lead.c AS SELECT DISTINCT c FROM lead.o',
    'DROP TABLE lead.c',
  ];
  const history = [];
  for (const sql of steps) {
    await leader.con.run(sql);
    const seq = await ship();
    const want = await fingerprint(leader, 'lead');
    const [r] = await follower.rows(`SELECT seq_after FROM duckblock_refresh('rep')`);
    assert.equal(r.seq_after, seq, `seq after: ${sql}`);
    assert.equal(await fingerprint(follower, 'rep'), want, `follower after: ${sql}`);
    history.push({ seq, want });
  }
  // Same answers to an ordinary query on both sides.
  const q = 'SELECT c, sum(qty)::BIGINT AS total FROM %s.o GROUP BY c ORDER BY c';
  assert.deepEqual(await follower.rows(q.replace('%s', 'rep')), await leader.rows(q.replace('%s', 'lead')));

  // Restore an earlier point by sequence number.
  const out = `${dir}/restored.duckdb`;
  const [rr] = await follower.rows(`SELECT seq FROM duckblock_restore('orders', ${sqlString(store)},
                                     ${sqlString(out)}, seq := ${history[1].seq})`);
  assert.equal(rr.seq, history[1].seq);
  await follower.con.run(`ATTACH ${sqlString(out)} AS old (READ_ONLY)`);
  assert.equal(await fingerprint(follower, 'old'), history[1].want);
  await follower.con.run('DETACH old');

  // After the leader closes its file, the replica is byte-identical to it.
  await leader.con.run('DETACH lead');
  const [last] = await leader.rows(`SELECT shipped_seq FROM duckblock_sync('orders')`);
  const [r] = await follower.rows(`SELECT seq_after FROM duckblock_refresh('rep')`);
  assert.equal(r.seq_after, last.shipped_seq);
  // The alias reads one of the follower's two replica files (PATH or
  // PATH.duckblock-alt, swapped at each refresh): that one is the leader's bytes.
  const [active] = await follower.rows(`SELECT path FROM duckblock_status() WHERE role = 'follower'`);
  await follower.con.run(`CALL duckblock_unfollow('rep')`);
  assert.ok(fs.readFileSync(active.path).equals(fs.readFileSync(leaderFile)), 'replica bytes differ from leader');

  for (const h of [leader, follower]) {
    h.con.closeSync();
    h.instance.closeSync();
  }
  // Without the RTLD_GLOBAL line, LOAD fails with the error docs/EXTENSION.md
  // ("Node") quotes, so that a reader can recognise it.
  const plain = require('node:child_process').spawnSync(process.execPath, ['-e', `
    const { DuckDBInstance } = require(${JSON.stringify(path.join(hostDir, 'node_modules', '@duckdb', 'node-api'))});
    (async () => {
      const db = await DuckDBInstance.create(':memory:', { allow_unsigned_extensions: 'true' });
      const con = await db.connect();
      try { await con.run(${JSON.stringify(`LOAD ${sqlString(extension)}`)}); console.log('loaded'); }
      catch (e) { console.log(e.message); }
    })();`], { encoding: 'utf8' });
  assert.match(plain.stdout, /IO Error: Extension ".*duckblock\.duckdb_extension" could not be loaded: .*undefined symbol: _ZTIN6duckdb/,
               plain.stdout + plain.stderr);

  fs.rmSync(dir, { recursive: true, force: true });
  console.log(`node host: ${steps.length} checkpoints replicated leader -> follower, restore by seq, files identical`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
