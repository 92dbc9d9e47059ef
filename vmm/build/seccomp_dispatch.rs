//! A binary search over the syscall numbers in front of seccompiler's filters.
//!
//! seccompiler lays a filter out as one chain: a block per allowed syscall, in number order,
//! each opening with `jeq NR` and falling through to the next block when the number is
//! another. A syscall reaches its block, or the default action, only after every block
//! before it, so the kernel's work grows with the chain at every filtered call, and, above
//! all, when a thread installs its filter: the kernel then runs the program for every
//! syscall number to find those it may always allow, which cost the vCPU threads about
//! 0.25 ms of their start on a virtualized host (docs/startup.md).
//!
//! The dispatch put in front compares the number against the blocks' numbers as a balanced
//! tree and jumps straight to the block for it, or to the default action. The blocks are
//! kept as they are, so what each syscall's arguments decide does not change; the build
//! checks that for every syscall number the new program and seccompiler's give the same
//! verdict ([`check_same_verdicts`]), and fails otherwise.

use seccompiler::sock_filter;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;
const BPF_ALU_AND_K: u16 = 0x54;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;
const ARGS_OFFSET: u32 = 16;

/// seccompiler's programs open with: load the architecture, check it, kill if another,
/// load the syscall number.
const HEADER_LEN: usize = 4;

/// At most this many numbers are compared one by one at a leaf of the tree.
const LEAF_SIZE: usize = 3;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Where seccompiler's chain sends each syscall number: (number, index of its block), in
/// number order, and the index of the default action after the last block.
fn chain(program: &[sock_filter]) -> (Vec<(u32, usize)>, usize) {
    let header_ok = program.len() > HEADER_LEN
        && program[0].code == BPF_LD_W_ABS
        && program[0].k == ARCH_OFFSET
        && program[1].code == BPF_JMP_JEQ_K
        && program[2].code == BPF_RET_K
        && program[3].code == BPF_LD_W_ABS
        && program[3].k == NR_OFFSET;
    assert!(header_ok, "seccompiler's program header has changed");
    let mut blocks = Vec::new();
    let mut at = HEADER_LEN;
    loop {
        let insn = program
            .get(at)
            .expect("seccompiler's chain runs off the program");
        if insn.code == BPF_RET_K {
            break;
        }
        // A block opens with: jeq NR, 0, 1; ja BODY; ja ON (towards the next block).
        let opens_block = insn.code == BPF_JMP_JEQ_K
            && insn.jt == 0
            && insn.jf == 1
            && program.get(at + 1).is_some_and(|i| i.code == BPF_JMP_JA)
            && program.get(at + 2).is_some_and(|i| i.code == BPF_JMP_JA);
        assert!(
            opens_block,
            "seccompiler's block layout has changed at {at}"
        );
        if let Some(&(previous, _)) = blocks.last() {
            assert!(
                previous < insn.k,
                "seccompiler's blocks are not in number order"
            );
        }
        blocks.push((insn.k, at));
        // Another number takes the second `ja`, which may land on more of them (seccompiler
        // hops over long blocks): the first other instruction is where the chain goes on.
        at = landing(program, at + 2);
    }
    (blocks, at)
}

/// Where a run of `ja` instructions starting at `at` ends.
fn landing(program: &[sock_filter], mut at: usize) -> usize {
    while let Some(insn) = program.get(at).filter(|i| i.code == BPF_JMP_JA) {
        at += 1 + insn.k as usize;
    }
    at
}

/// A jump in the dispatch, to be resolved once its length is known.
enum Target {
    /// An instruction of seccompiler's program.
    Original(usize),
    /// An instruction of the dispatch.
    Dispatch(usize),
}

/// The dispatch for `blocks`, as instructions whose `ja` targets are resolved later.
fn dispatch(blocks: &[(u32, usize)], default: usize, out: &mut Vec<(sock_filter, Option<Target>)>) {
    if blocks.len() <= LEAF_SIZE {
        for &(nr, block) in blocks {
            out.push((jump(BPF_JMP_JEQ_K, nr, 0, 1), None));
            out.push((stmt(BPF_JMP_JA, 0), Some(Target::Original(block))));
        }
        out.push((stmt(BPF_JMP_JA, 0), Some(Target::Original(default))));
        return;
    }
    let (lower, upper) = blocks.split_at(blocks.len() / 2);
    // jge FIRST_OF_UPPER, 0, 1; ja UPPER; LOWER...; UPPER...
    out.push((jump(BPF_JMP_JGE_K, upper[0].0, 0, 1), None));
    let to_upper = out.len();
    out.push((stmt(BPF_JMP_JA, 0), None));
    dispatch(lower, default, out);
    out[to_upper].1 = Some(Target::Dispatch(out.len()));
    dispatch(upper, default, out);
}

/// seccompiler's `program` with a binary search over the syscall numbers after its header.
pub fn with_dispatch(program: &[sock_filter]) -> Vec<sock_filter> {
    let (blocks, default) = chain(program);
    let mut tree = Vec::new();
    dispatch(&blocks, default, &mut tree);
    let shift = tree.len();
    let mut out = program[..HEADER_LEN].to_vec();
    for (index, (mut insn, target)) in tree.into_iter().enumerate() {
        let at = HEADER_LEN + index;
        if let Some(target) = target {
            let to = match target {
                Target::Original(i) => i + shift,
                Target::Dispatch(i) => HEADER_LEN + i,
            };
            insn.k = u32::try_from(to - at - 1).expect("a jump of the dispatch fits");
        }
        out.push(insn);
    }
    // The blocks keep their relative jumps: they all move by the dispatch's length.
    out.extend_from_slice(&program[HEADER_LEN..]);
    out
}

/// The input a filter sees: syscall number, architecture and arguments.
struct SeccompData {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl SeccompData {
    fn word(&self, offset: u32) -> u32 {
        match offset {
            NR_OFFSET => self.nr,
            ARCH_OFFSET => self.arch,
            _ => {
                let index = (offset - ARGS_OFFSET) as usize;
                let arg = self.args[index / 8];
                // Little-endian: the low word first.
                if index.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
        }
    }
}

/// Runs `program` on `data` as the kernel would, for the instructions seccompiler and the
/// dispatch use; returns the action.
fn verdict(program: &[sock_filter], data: &SeccompData) -> u32 {
    let mut a = 0u32;
    let mut pc = 0usize;
    loop {
        let insn = &program[pc];
        pc += 1;
        match insn.code {
            BPF_LD_W_ABS => a = data.word(insn.k),
            BPF_ALU_AND_K => a &= insn.k,
            BPF_JMP_JA => pc += insn.k as usize,
            BPF_JMP_JEQ_K => pc += usize::from(if a == insn.k { insn.jt } else { insn.jf }),
            BPF_JMP_JGE_K => pc += usize::from(if a >= insn.k { insn.jt } else { insn.jf }),
            BPF_RET_K => return insn.k,
            code => panic!("instruction {code:#06x} is not one seccompiler emits"),
        }
    }
}

/// Panics unless `dispatched` gives every syscall number the verdict `original` gives, for
/// arguments that take the allowing paths (each constant the program compares with, in
/// every argument) and arguments that take none.
pub fn check_same_verdicts(original: &[sock_filter], dispatched: &[sock_filter]) {
    let mut constants: Vec<u32> = original
        .iter()
        .filter(|i| i.code == BPF_JMP_JEQ_K)
        .map(|i| i.k)
        .collect();
    constants.sort_unstable();
    constants.dedup();
    let arch = original[1].k;
    let mut argument_sets = vec![[0u64; 6], [u64::MAX; 6]];
    argument_sets.extend(constants.iter().map(|&k| [u64::from(k); 6]));
    let (blocks, _) = chain(original);
    let numbers = (0..1024u32).chain([0x4000_0000, u32::MAX]);
    for nr in numbers {
        // Only a syscall with a block looks at its arguments.
        let tried = if blocks.iter().any(|&(n, _)| n == nr) {
            &argument_sets[..]
        } else {
            &argument_sets[..2]
        };
        for args in tried {
            for arch in [arch, 0] {
                let data = SeccompData {
                    nr,
                    arch,
                    args: *args,
                };
                let (was, is) = (verdict(original, &data), verdict(dispatched, &data));
                assert_eq!(was, is, "syscall {nr} arch {arch:#x} args {args:x?}");
            }
        }
    }
}
