"""Command-line fragments the CLI tests share, so each test spells out only the flags it is about."""

# No logger, checkpoints or progress bar: a CLI test checks exit codes and files, not logs.
QUIET = (
    "--trainer.logger",
    "false",
    "--trainer.enable_checkpointing",
    "false",
    "--trainer.enable_progress_bar",
    "false",
)

# tests.helpers.builders.TinyDigits (4 classes of 12x12 digits) with a ConvNet small enough for it (its
# classes, channels and image size come from the data through the CLI's links).
TINY_DIGITS_NET = (
    "--data",
    "tests.helpers.builders.TinyDigits",
    "--model.init_args.net.init_args.width",
    "8",
    "--model.init_args.net.init_args.depth",
    "2",
)

# A matching config (datadam.yaml, dm.yaml, dc.yaml, ...) shrunk to the bundled digits: 4 real images per
# class, IPC 1, width 8.
TINY_DATADAM = (
    "--data.init_args.source",
    "bundled",
    "--data.init_args.episode_per_class",
    "4",
    "--model.init_args.batch_real",
    "4",
    "--model.init_args.ipc",
    "1",
    "--model.init_args.net.init_args.width",
    "8",
)

# A trajectory-matching config (pad.yaml, datm.yaml) shrunk to TINY_DIGITS_NET and the two-expert,
# three-epoch buffer of tests.helpers.trajectory: IPC 2, 3 student steps matching 1 expert epoch, start
# epochs in [0, 2) growing from [0, 1).
TINY_TRAJECTORY = (
    *TINY_DIGITS_NET,
    "--model.init_args.ipc",
    "2",
    "--model.init_args.syn_steps",
    "3",
    "--model.init_args.expert_epochs",
    "1",
    "--model.init_args.max_start_epoch",
    "2",
    "--model.init_args.current_max_start_epoch",
    "1",
)

# DC with DSA, two image updates per network and one inner epoch: the shortest run that trains a network
# between updates.
SHORT_DSA = (
    "--model.init_args.outer_loop",
    "2",
    "--model.init_args.inner_loop",
    "1",
    "--model.init_args.dsa_strategy",
    "auto",
)
