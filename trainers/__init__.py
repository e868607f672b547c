"""vdata.trainers"""
