"""LEGO (k=5) as text, continual training of the pretrained testbed model, every skill equally.

  make testbed
  python main.py --config=configs/testbed.py --workdir=workdirs/testbed
  python main.py --config=configs/lego_continual.py --workdir=workdirs/lego_continual \
      --config.init_from=workdirs/testbed

Skill-It's LEGO gains (Chen et al. 2023) are from continual training of a pretrained model
(GPT-Neo 125M, HazyResearch/skill-it); configs/lego_stratified.py trains from scratch on
LEGO's own 36 words instead. Here the examples are written as text (data/lego.py, render
"text") and tokenized by the testbed's 1024-piece BPE, so the testbed model (its shape, its
tokenizer; `init_from` must be a run of configs/testbed.py) starts from tokens it knows. The
loss is on the answer digit alone, so `eval/skill_<s>/loss` is the answer's negative
log-likelihood (ln 2 = 0.69 at chance, a continuous measure) and `accuracy` its greedy exact
match. (The reference trainer's loss covers the whole sentence, trainer/utils.py's
DataCollatorForLanguageModeling; only its evaluation is on the answer: that form is
`--config.data.lego_supervision=sentence`.) The longest of 10,000
rows at k=5 was 41 tokens (seq_len_needed bounds them by 48), so rows are 64 tokens (the
pretrained run's were 128: positions below 64 are ones it trained; 2.2x faster steps than at
128); sentence supervision fits too, chain needs up to 77 (raise seq_len to 128 for it).

Schedule: 600 steps of 32 rows (the reference's batch; 19k examples, 3.8k per skill), 6
Skill-It rounds of 100 steps as the paper's 6 of 1000. Peak lr 1e-3, a third of the testbed's
3e-3 (a continued run re-warms below the pretraining peak, so the text it knows is not washed
out before the skills move), with 30 warm-up steps: only the params are loaded, so Adam's
moments start at zero and its first updates are sign-sized. No weight decay: decay pulls
towards 0, not towards the pretrained weights. Eval of 1000 rows per skill every 50 steps and
at step 0 (the pretrained model's own answer loss; Skill-It's first window holds it).
"""

from configs import testbed
from data.lego import skill_names

K = 5  # variables per example = skills
SKILLS = ",".join(skill_names(K))


def get_config():
    c = testbed.get_config()  # the model, tokenizer (builtin, 1024) and data_dir it continues
    c.init_from = ""  # the pretrained testbed run's workdir (the comparison sets it)
    c.data.update(source="lego", lego_k=K, lego_supervision="answer", lego_render="text",
                  weights="uniform", eval_rows=1000, seq_len=64)
    c.train.update(steps=600, batch_size=32, lr=1e-3, warmup_steps=30, schedule="cosine",
                   weight_decay=0.0, eval_every=50, eval_at_start=True, checkpoint_every=300,
                   log_every=25)
    return c
