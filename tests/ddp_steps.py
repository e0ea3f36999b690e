"""A few training steps of one category, alone or under torchrun (--distributed ddp), for tests/test_distributed.py.

Float64 makes the comparison exact: in float32 the rounding of one run differs from another's by
~1e-4 of the student's outputs (as between float32 and float64 in one process), and Adam turns
differences in near-zero gradients into whole steps. Writes rank 0's trainable weights to --out.
"""

import argparse

import torch

from rdexpert.checkpoint.io import write_tensors
from rdexpert.model import ExpertTeacherStudent
from rdexpert.training import distributed
from rdexpert.training.loop import ParallelParts, TrainConfig, Trainer, initialise_student, train_step

parser = argparse.ArgumentParser()
parser.add_argument("--data-root", required=True)
parser.add_argument("--category", required=True)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=4)
parser.add_argument("--out", required=True)
args = parser.parse_args()

torch.set_num_threads(1)
torch.set_default_dtype(torch.float64)
config = TrainConfig(data_root=args.data_root, category=args.category, out=args.out + ".run", preset="quick",
                     image_size=64, batch_size=args.batch_size, iterations=args.steps, health_every=0)
trainer = Trainer(config, progress=False, distributed_mode="ddp")
if trainer.parallel:
    distributed.start_group(trainer.worker, trainer.device)
torch.manual_seed(config.seed)
dataset, *_ = trainer._datasets()
model = ExpertTeacherStudent(config.model_config())
initialise_student(model, trainer.recipe.student_init)
student_optimizer = torch.optim.Adam(model.student_parameters(), lr=config.student_lr, betas=config.betas)
teacher_optimizer = torch.optim.Adam(model.trained_teacher.parameters(), lr=config.teacher_lr, betas=config.betas)
parallel = ParallelParts(model, trainer.device) if trainer.parallel else None
model.train()
batches = trainer._batches(dataset, 0)
for _ in range(args.steps):
    _, batch = next(batches)
    losses = train_step(model, batch, teacher_optimizer, student_optimizer, trainer.device, recipe=trainer.recipe,
                        parallel=parallel)
if trainer.worker.is_main:
    write_tensors(args.out, {k: v.contiguous() for k, v in model.trainable_state_dict().items()})
    print(losses)
distributed.finish_group()
