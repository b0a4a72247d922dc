# Time lme4 on the benchmark's growth model (called by bench/mixed.py).
#   Rscript bench/mixed_lme4.R DATA.csv REPEATS OUT.json
# Same model as pipeline.trajectories.models' growth model: correlated patient intercept and slope,
# therapy-group intercept for group-format patients, therapist intercept and slope.
suppressPackageStartupMessages({library(lme4); library(jsonlite); library(data.table)})
args <- commandArgs(trailingOnly = TRUE)
d <- fread(args[1])
repeats <- as.integer(args[2])
d[, condition := factor(condition, levels = c("major_depression", "dysthymia", "anxiety",
                                               "eating_disorder", "bipolar", "adjustment",
                                               "other"))]
d[, format := factor(format, levels = c("individual", "group"))]
d[, group_key := ifelse(is.na(group_id), "(none)", as.character(group_id))]
f <- score ~ weeks * (condition + format) + age_centred + sex_male +
  (1 + weeks | patient_id) + (0 + is_group | group_key) + (1 | therapist_id) +
  (0 + weeks | therapist_id)
seconds <- numeric(0)
for (i in seq_len(repeats)) {
  gc()
  t <- system.time(fit <- lmer(f, d))[["elapsed"]]
  seconds <- c(seconds, t)
}
out <- list(seconds = seconds, loglik = as.numeric(logLik(fit)), fixef = as.list(fixef(fit)),
            singular = isSingular(fit), lme4 = as.character(packageVersion("lme4")),
            R = R.version.string, optimizer = fit@optinfo$optimizer,
            max_mem_gb = sum(gc()[, 6]) / 1024)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE), args[3])
