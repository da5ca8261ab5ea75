// S3 settings from DuckDB secrets, the way DuckDB users configure S3:
//   CREATE SECRET (TYPE s3, KEY_ID '...', SECRET '...', REGION '...',
//                  ENDPOINT 'host:port', URL_STYLE 'path', USE_SSL false,
//                  SCOPE 's3://bucket/prefix/');
// TYPE s3 is defined by DuckDB's httpfs extension. Where httpfs is not
// installed (it is downloaded on first use), TYPE duckblock takes the same
// parameters; the extension registers that type, never s3 itself (httpfs
// would fail to load beside a second s3 type).
#pragma once

#include <string>

#include "duckblock/store.h"
#include "duckdb.hpp"
#include "duckdb/main/extension/extension_loader.hpp"

namespace duckblock::extension {

void register_secret_type(duckdb::ExtensionLoader& loader);

// `options` for the store at `url`, with the S3 or duckblock secret whose
// scope matches `url` best (DuckDB's longest-prefix rule; s3 wins a tie)
// filling in what the duckblock_s3_* settings leave unset. Its key and
// secret come before the environment and the credentials file.
StoreOptions with_secret(duckdb::DatabaseInstance& db, const std::string& url, StoreOptions options);

}  // namespace duckblock::extension
