"""Every field an experiment can set, with its default. Other configs build on this one.
Each method's own fields (config.reweight.<method>) are declared in its module in reweight/.

  python main.py --config=configs/base.py --workdir=workdirs/base

Override any field on the command line, e.g. `--config.train.steps=100`.
"""

import ml_collections

from reweight import registry


def get_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds params init, the data order and every method's RNG
    c.init_from = ""  # a workdir or checkpoint dir to load params from ("" = fresh init)

    c.model = ml_collections.ConfigDict()
    c.model.vocab_size = 8192  # must cover the tokenizer's ids
    c.model.d_model = 256  # residual width
    c.model.num_heads = 4  # attention heads; d_model % num_heads == 0
    c.model.num_layers = 4  # transformer blocks
    c.model.mlp_dim = 1024  # SwiGLU hidden width
    c.model.max_len = 512  # longest sequence the model accepts
    c.model.rope_base = 10_000.0  # RoPE frequency base
    c.model.tie_embeddings = True  # output layer reuses the token embedding
    c.model.compute_dtype = "float32"  # activations: float32 | bfloat16 (params stay float32)
    c.model.remat = "none"  # rematerialise each block: none | full | dots (save matmul outputs)
    c.model.attention = "auto"  # jax.nn.dot_product_attention implementation: auto | xla | cudnn

    c.data = ml_collections.ConfigDict()
    c.data.source = "seqio"  # seqio (tokenized text files per domain) | synthetic (Markov text, tests)
    # Built-in names (books,reference,code,dialogue,technical,math) or "name=GLOB" entries, e.g.
    # "mine=/data/mine/{split}-*.jsonl", "notes=text:/data/notes/{split}*.txt", "wiki=tfds:wiki:1.0.0".
    c.data.domains = "books,reference,code,dialogue,technical,math"
    c.data.data_dir = "data_cache"  # where `python -m data.corpus` built the corpus and tokenizer
    c.data.vocab = "builtin"  # builtin (corpus BPE) | byte | a SentencePiece .model | a tokenizer.json
    c.data.text_key = "text"  # JSONL / TFDS field that holds the text
    c.data.tfds_data_dir = ""  # where tfds: domains were built
    c.data.heldout = True  # also evaluate the never-trained-on held-out domains (built-in corpus)
    c.data.seq_len = 128  # tokens per row
    c.data.num_domains = 4  # synthetic only: how many domains to make
    c.data.weights = "uniform"  # uniform | floats in domain order | "name:w,..." (others 0)
    c.data.shuffle_buffer_size = 1024  # chunks in each domain's shuffle buffer
    c.data.eval_rows = 64  # validation rows per domain at each eval
    c.data.prefetch = 2  # batches a background thread draws and puts on device ahead of the step
    c.data.check_records = True  # read every record before training (~40 MB/s on 2 cores)
    c.data.store = ""  # a prepared token store (--mode=prepare writes it; "" = tokenize on the fly)
    c.data.prepare_address = ""  # --mode=prepare's Ray cluster ("" = this machine, all cores)
    # lego only (data/lego.py): skills are the depths 1..k of a chain of k binary variables.
    c.data.lego_k = 5  # variables per example = number of skills
    # answer (the answer digit) | sentence (train rows: every token; eval rows: the answer) |
    # chain (every hop's value)
    c.data.lego_supervision = "chain"  # which tokens carry the loss (above)
    c.data.lego_render = "words"  # words (LEGO's own 36 ids) | text (written out, data.vocab's ids)

    c.eval = ml_collections.ConfigDict()
    # Extra eval-only domains (seqio): built-in names or "name=GLOB" entries; a glob with
    # {split} gives its validation files, one without gives its files as they are.
    c.eval.domains = ""
    # Downstream tasks through lm-evaluation-harness (lm/downstream.py): in --mode=eval, and in
    # training at its last step (and every `every` steps) unless in_loop is off.
    c.eval.harness = ml_collections.ConfigDict()
    c.eval.harness.tasks = ""  # comma-separated lm-eval task names or task YAML paths ("" = none)
    c.eval.harness.num_fewshot = -1  # few-shot examples per prompt (-1 = each task's default)
    c.eval.harness.limit = 0.0  # docs per task: 0 = all, N >= 1 the first N, (0, 1) a share
    c.eval.harness.batch_size = 32  # rows per scoring batch (all processes)
    c.eval.harness.max_length = 0  # context tokens; longer requests keep their end (0 = seq_len)
    c.eval.harness.in_loop = True  # training runs the tasks too (at its last step at least)
    c.eval.harness.every = 0  # in the loop: steps between runs (0 = the last step only)
    c.eval.harness.bootstrap_iters = 100  # resamples for non-mean metrics' stderr (0: none)
    c.eval.harness.seed = 0  # seeds the few-shot draw and any sampled generation

    # --mode=sample only: text from the checkpoint of --workdir (or config.init_from).
    c.sample = ml_collections.ConfigDict()
    c.sample.prompt = ""  # the text to continue ("" = from nothing)
    c.sample.prompts_file = ""  # one prompt per line, instead of sample.prompt
    c.sample.max_new_tokens = 64  # tokens generated per prompt (fewer if EOS comes first)
    c.sample.temperature = 0.0  # 0 = greedy; > 0 samples from softmax(logits / temperature)
    c.sample.top_k = 0  # sample among the k most likely tokens (0 = all)
    c.sample.seed = 0  # seeds the sampling

    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000  # total optimizer steps (the schedule's length)
    c.train.run_steps = 0  # stop this invocation after this many steps (0 = run to train.steps)
    c.train.batch_size = 32  # global batch, rows (all hosts, all micro-batches)
    c.train.microbatches = 1  # gradient accumulation: micro-batches per step
    c.train.lr = 3e-3  # peak learning rate
    c.train.schedule = "cosine"  # cosine (warm-up then cosine) | wsd (warm-up, stable, decay)
    c.train.warmup_steps = 100  # linear warm-up from 0
    c.train.decay_fraction = 0.2  # wsd only: fraction of steps spent decaying to 0
    c.train.min_lr_ratio = 0.1  # cosine only: final lr as a fraction of the peak
    c.train.b1 = 0.9  # AdamW beta1
    c.train.b2 = 0.95  # AdamW beta2
    c.train.weight_decay = 0.1  # AdamW decoupled weight decay (matrices only)
    c.train.grad_clip = 1.0  # global-norm clip (0 = off)
    c.train.log_every = 10  # steps between metrics lines
    c.train.eval_every = 200  # steps between per-domain evals (0 = only at the end)
    c.train.eval_at_start = False  # a fresh run also evaluates at step 0 (before any method acts)
    c.train.checkpoint_every = 200  # steps between checkpoints (and one at the end)
    c.train.keep_checkpoints = 3  # checkpoints kept on disk
    c.train.peak_flops = 0.0  # FLOP/s per device for MFU (0 = measure a matmul at start)
    c.train.progress_bar = True  # tqdm bar with loss, tokens/s and ETA
    c.train.on_nonfinite = "stop"  # a NaN/Inf loss or gradient: stop | skip (the update; counted)
    c.train.max_nonfinite_skips = 10  # skip mode: stop after this many skipped updates in a row
    c.train.hooks = ""  # extra loop hooks: "package.module:factory,..." (factory(config) -> Hook)

    # Frozen reference models (lm/reference.py): each the --workdir of an earlier run of this
    # project (its own config.json gives its model shape; same vocabulary and data.seq_len).
    # Loaded params-only, never checkpointed. See "Reference-model methods" in the README.
    c.reference = ml_collections.ConfigDict()
    c.reference.workdir = ""  # the step's reference (rho1, doremi excess=token) and perplexity's
    c.reference.target = ""  # cross-entropy difference: the model trained on the target domain
    c.reference.general = ""  # cross-entropy difference: the model trained on the general mix

    c.mesh = ml_collections.ConfigDict()
    c.mesh.axes = ("data", "fsdp", "model")  # mesh axis names
    c.mesh.shape = (-1, 1, 1)  # devices per axis; one -1 takes the rest
    c.mesh.distributed = False  # call jax.distributed.initialize() (multi-host)
    # Logical axis -> mesh axes, MaxText style; applied first-match, a mesh axis used once per array.
    c.mesh.rules = (
        ("batch", ("data", "fsdp")),
        ("vocab", "model"),
        ("embed", "fsdp"),
        ("mlp", "model"),
        ("heads", "model"),
        ("kv", None),
        ("act_batch", ("data", "fsdp")),
        ("act_len", None),
        ("act_embed", None),
        ("act_heads", "model"),
        ("act_mlp", "model"),
        ("act_vocab", "model"),
    )

    c.reweight = ml_collections.ConfigDict()
    # Each: a name of reweight/registry.py, or a factory's import path "package.module:name".
    c.reweight.instance = "uniform"  # in-step weighter (per-example or per-token weights)
    c.reweight.mixture = "fixed"  # domain-weight policy on the host (fixed = config.data.weights)
    c.reweight.selector = "none"  # stage selector between training stages (none = as drawn)
    # Each method's own fields, config.reweight.<method name> (e.g. config.reweight.loss_based.r),
    # with their defaults and comments in its module's defaults(): reweight/loss_based.py,
    # rho1.py, schedule.py, upsample.py, doremi.py, odm.py, skill_it.py, mates.py, ref_select.py.
    c.reweight.update(registry.defaults())

    # --mode=sweep only (runs/sweep.py, reweight/regmix.py): RegMix-style mixture sweep.
    c.sweep = ml_collections.ConfigDict()
    c.sweep.num_trials = 64  # proxy trainings, one per drawn mixture (>= 2)
    c.sweep.center = "natural"  # WEIGHTS the Dirichlet's prior is made from
    # regmix (the reference: Dir(s * center^temperature), s log-uniform on strength_range) |
    # scaled (Dir(s * K * center), s cycled over dirichlet_strengths)
    c.sweep.dirichlet = "regmix"
    c.sweep.temperature = 0.5  # regmix: the prior is center ** temperature, renormalised
    c.sweep.strength_range = "0.1,5"  # regmix: 15 log-spaced strengths over LOW,HIGH
    c.sweep.dirichlet_strengths = "0.3,1,3"  # scaled: concentration scales (> 0), cycled
    c.sweep.max_epochs = 4.0  # redraw a mixture that repeats a domain more often in target_tokens
    c.sweep.target_tokens = 0  # tokens of the run the mixture is for (0 = all the domains hold)
    c.sweep.min_weight = 0.01  # weights below this are zeroed (then renormalised)
    c.sweep.sample_multiplier = 100  # trials: distinct ones of this many times as many draws
    c.sweep.target = "average"  # eval domain whose loss to minimise, or average (training domains)
    c.sweep.regression = "ridge"  # ridge (linear) | gbm (gradient-boosted trees, scikit-learn)
    c.sweep.ridge_alpha = 1e-4  # ridge penalty
    c.sweep.holdout_fraction = 0.25  # trials held out to report the regression's Spearman
    c.sweep.num_simulations = 100_000  # mixtures drawn for prediction
    c.sweep.top_k = 128  # the chosen mixture: mean of the k best predicted
    c.sweep.backend = "local"  # local (in this process) | ray
    c.sweep.ray_address = ""  # "" = start a local Ray; else ray.init(address=...), e.g. "auto"
    c.sweep.ray_cpus_per_trial = 1.0  # Ray resources each trial asks for
    c.sweep.ray_gpus_per_trial = 0.0  # Ray resources each trial asks for
    c.sweep.trial = -1  # run only this trial (array jobs); -1 = every missing trial, then fit
    # RegMix's rank-invariance check: the first N trials' mixtures trained again at the target
    # scale (transfer_overrides: model.* and train.* fields), Spearman over them (0 = off)
    c.sweep.transfer_trials = 0
    c.sweep.transfer_overrides = ""  # e.g. "model.d_model=128;model.num_layers=4;train.steps=500"
    c.sweep.vmap_trials = 1  # local: trials trained together with jax.vmap (1 = one at a time)
    # --mode=skill_graph only (runs/skill_graph.py): brute-force estimate of the skills graph.
    c.skill_graph = ml_collections.ConfigDict()
    c.skill_graph.start_steps = 0  # uniform-mix steps to the shared start (0 = init/init_from)
    c.skill_graph.steps = 100  # H: steps on each skill alone from the start
    return c
