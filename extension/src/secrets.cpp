// S3 settings from DuckDB secrets. See secrets.h.
#include "secrets.h"

#include "duckblock/error.h"
#include "duckdb/catalog/catalog_transaction.hpp"
#include "duckdb/main/secret/secret.hpp"
#include "duckdb/main/secret/secret_manager.hpp"

namespace duckblock::extension {

namespace {

constexpr const char* kType = "duckblock";

// CREATE SECRET (TYPE duckblock, ...): the parameters of httpfs's s3 type,
// stored under the same keys, so that both read the same way.
duckdb::unique_ptr<duckdb::BaseSecret> create_secret(duckdb::ClientContext&, duckdb::CreateSecretInput& input) {
  auto scope = input.scope;
  if (scope.empty()) scope = {"s3://"};
  auto secret = duckdb::make_uniq<duckdb::KeyValueSecret>(scope, input.type, input.provider, input.name);
  for (const auto& [key, value] : input.options) {
    secret->secret_map[duckdb::StringUtil::Lower(key)] = value;
  }
  secret->redact_keys = {"secret", "session_token"};
  return secret;
}

std::optional<std::string> get(const duckdb::KeyValueSecret& s, const char* key) {
  duckdb::Value v;
  if (!s.TryGetValue(key, v) || v.IsNull()) return std::nullopt;
  auto str = v.ToString();
  if (str.empty()) return std::nullopt;
  return str;
}

}  // namespace

void register_secret_type(duckdb::ExtensionLoader& loader) {
  duckdb::SecretType type;
  type.name = kType;
  type.deserializer = duckdb::KeyValueSecret::Deserialize<duckdb::KeyValueSecret>;
  type.default_provider = "config";
  type.extension = "duckblock";
  loader.RegisterSecretType(type);
  duckdb::CreateSecretFunction f;
  f.secret_type = kType;
  f.provider = "config";
  f.function = create_secret;
  for (const char* p : {"key_id", "secret", "session_token", "region", "endpoint", "url_style"}) {
    f.named_parameters[p] = duckdb::LogicalType::VARCHAR;
  }
  f.named_parameters["use_ssl"] = duckdb::LogicalType::BOOLEAN;
  loader.RegisterFunction(f);
}

StoreOptions with_secret(duckdb::DatabaseInstance& db, const std::string& url, StoreOptions options) {
  if (url.rfind("s3://", 0) != 0) return options;
  auto& manager = duckdb::SecretManager::Get(db);
  auto transaction = duckdb::CatalogTransaction::GetSystemTransaction(db);
  duckdb::SecretMatch best;
  for (const char* type : {"s3", kType}) {
    auto match = manager.LookupSecret(transaction, url, type);
    if (match.HasMatch() && (!best.HasMatch() || match.score > best.score)) best = match;
  }
  if (!best.HasMatch()) return options;
  const auto* kv = dynamic_cast<const duckdb::KeyValueSecret*>(&best.GetSecret());
  if (!kv) return options;
  const std::string source = "the DuckDB secret '" + kv->GetName() + "' (TYPE " + kv->GetType() + ")";
  auto key = get(*kv, "key_id"), secret = get(*kv, "secret");
  if (key || secret) {
    if (!key || !secret) {
      throw Error(ErrorKind::kAuth, source + " has " + (key ? "KEY_ID but no SECRET" : "SECRET but no KEY_ID"));
    }
    options.credentials = StoreOptions::Credentials{*key, *secret, get(*kv, "session_token").value_or(""), source};
  }
  if (!options.region) options.region = get(*kv, "region");
  if (!options.endpoint) {
    if (auto e = get(*kv, "endpoint")) {
      // DuckDB's secrets name the host (and port); USE_SSL picks the scheme.
      bool has_scheme = e->rfind("http://", 0) == 0 || e->rfind("https://", 0) == 0;
      bool ssl = get(*kv, "use_ssl").value_or("true") != "false";
      options.endpoint = has_scheme ? *e : (ssl ? "https://" : "http://") + *e;
    }
  }
  if (!options.path_style) {
    if (auto style = get(*kv, "url_style")) {
      if (*style == "path") options.path_style = true;
      if (*style == "vhost") options.path_style = false;
    }
  }
  return options;
}

}  // namespace duckblock::extension
