// Interop check with the official AWS SDK for JavaScript (v3): reads the
// objects the duckblock S3 store wrote and prints their SHA-256, then writes
// one of its own for the store to read back.
//   node s3_interop.cjs ENDPOINT BUCKET PREFIX    (NODE_PATH holds the SDK)
const crypto = require('node:crypto')
const { S3Client, GetObjectCommand, PutObjectCommand } = require('@aws-sdk/client-s3')

async function main() {
  const [endpoint, bucket, prefix] = process.argv.slice(2)
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    // The SDK's default CRC32 trailer uses aws-chunked framing, which s3rver
    // would store verbatim; ask for checksums only where S3 requires them.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
  for (const name of ['ours-small.bin', 'ours-big.bin']) {
    const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: prefix + name }))
    const bytes = Buffer.from(await res.Body.transformToByteArray())
    console.log(name, crypto.createHash('sha256').update(bytes).digest('hex'))
  }
  const theirs = crypto.randomBytes(2000000)
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: prefix + 'theirs.bin', Body: theirs }))
  console.log('theirs.bin', crypto.createHash('sha256').update(theirs).digest('hex'))
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
